//! `trace simulate`: the trace of a packet that is built, not received (MidoNet's "logical
//! packet which would be traced but not emitted", OVS's `ofproto/trace`).
//!
//! A packet is built from a flow description ([`FlowSpec`]: ingress vif, MACs, addresses,
//! protocol, ports, TCP flags, or raw bytes) and run through the live pipeline
//! ([`crate::pipeline::process_with`]) on the current FIB, with a flow stage that only
//! looks flows up ([`crate::pipeline::Record::DRY_RUN`]): an existing flow gives its action;
//! without one, the verdict is the one the agent's policy would give (asked through the
//! caller's closure). Nothing is sent, counted, created, parked or held: the packet is a
//! `Vec`, the hold store and the fragment table are scratch ones, no mirror is attached.
//! The steps are the ones a recorded trace of the same packet has (built by
//! [`super::steps`] from the same decisions), without the request match.

use super::step::Step;
use super::steps::{flow_steps, parse, parsed_steps, route_steps};
use crate::fib::{Fib, Vif};
use crate::packet::{checksum, ethernet, ipv4, EtherType, IpProtocol};
use crate::pipeline::flow::HoldStore;
use crate::pipeline::frag::FragTable;
use crate::pipeline::{Decision, FlowStage, Record, RouteBy, VecBuf, Verdict};
use flow_table::{Action, FlowKey, FlowTable};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A bad field of a simulation request: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The field (`vif`, `src_ip`, `hex`, ...).
    pub field: &'static str,
    /// What is wrong with it.
    pub msg: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.msg)
    }
}

fn bad(field: &'static str, msg: impl Into<String>) -> SpecError {
    SpecError { field, msg: msg.into() }
}

/// The packet to simulate, as the `trace_simulate` command gives it (see
/// [`FlowSpec::from_json`] for the fields and their defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpec {
    /// Ingress vif id.
    pub vif: u16,
    /// The frame to run (built from the fields, or given as raw bytes).
    pub frame: Vec<u8>,
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name).filter(|x| !x.is_null())
}

fn num(v: &Value, name: &'static str, max: u64) -> Result<Option<u64>, SpecError> {
    match field(v, name) {
        None => Ok(None),
        Some(x) => match x.as_u64().or_else(|| x.as_str().and_then(|s| s.parse().ok())) {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(bad(name, format!("must be a number from 0 to {max}"))),
        },
    }
}

fn mac(v: &Value, name: &'static str) -> Result<Option<[u8; 6]>, SpecError> {
    let Some(x) = field(v, name) else { return Ok(None) };
    let s = x.as_str().ok_or_else(|| bad(name, "must be a MAC address string"))?;
    let parts: Vec<_> = s.split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(bad(name, format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")));
    }
    for (o, p) in m.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).map_err(|_| bad(name, format!("{s:?} is not a MAC address")))?;
    }
    Ok(Some(m))
}

fn addr(v: &Value, name: &'static str) -> Result<Option<IpAddr>, SpecError> {
    let Some(x) = field(v, name) else { return Ok(None) };
    let s = x.as_str().ok_or_else(|| bad(name, "must be an IP address string"))?;
    s.parse().map(Some).map_err(|_| bad(name, format!("{s:?} is not an IP address")))
}

/// A protocol by name (`tcp`, `udp`, `icmp`, `icmp6`) or number.
fn protocol(v: &Value) -> Result<Option<u8>, SpecError> {
    let Some(x) = field(v, "proto") else { return Ok(None) };
    if let Some(n) = x.as_u64() {
        return u8::try_from(n).map(Some).map_err(|_| bad("proto", "must be 0-255 or tcp, udp, icmp, icmp6"));
    }
    match x.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("tcp") => Ok(Some(IpProtocol::TCP)),
        Some("udp") => Ok(Some(IpProtocol::UDP)),
        Some("icmp") => Ok(Some(IpProtocol::ICMP)),
        Some("icmp6" | "icmpv6") => Ok(Some(IpProtocol::ICMPV6)),
        Some(s) => {
            s.parse().map(Some).map_err(|_| bad("proto", format!("{s:?} is not tcp, udp, icmp, icmp6 or 0-255")))
        }
        None => Err(bad("proto", "must be a protocol name or number")),
    }
}

/// TCP flags by name list (`syn`, `syn,ack`, `fin|ack`, ...) or number.
fn tcp_flags(v: &Value) -> Result<Option<u8>, SpecError> {
    let Some(x) = field(v, "tcp_flags") else { return Ok(None) };
    if let Some(n) = x.as_u64() {
        return u8::try_from(n).map(Some).map_err(|_| bad("tcp_flags", "must be 0-255 or names (syn,ack,...)"));
    }
    let s = x.as_str().ok_or_else(|| bad("tcp_flags", "must be flag names or a number"))?;
    let mut f = 0u8;
    for name in s.split([',', '|', '+']).map(str::trim).filter(|n| !n.is_empty()) {
        f |= match name.to_ascii_lowercase().as_str() {
            "fin" => 0x01,
            "syn" => 0x02,
            "rst" => 0x04,
            "psh" => 0x08,
            "ack" => 0x10,
            "urg" => 0x20,
            other => return Err(bad("tcp_flags", format!("unknown flag {other:?} (fin, syn, rst, psh, ack, urg)"))),
        };
    }
    Ok(Some(f))
}

fn hex_bytes(s: &str) -> Result<Vec<u8>, SpecError> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
    if !digits.len().is_multiple_of(2) {
        return Err(bad("hex", "an odd number of hex digits"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| bad("hex", "not hex digits")))
        .collect()
}

impl FlowSpec {
    /// [`FlowSpec::from_json`] of a decoded `trace_simulate` command.
    pub fn from_command(fib: &Fib, c: &crate::control::protocol::TraceSimulate) -> Result<FlowSpec, SpecError> {
        let v = serde_json::to_value(c).map_err(|e| bad("request", e.to_string()))?;
        FlowSpec::from_json(fib, &v)
    }

    /// The packet a `trace_simulate` request describes, on `fib`'s vifs:
    ///
    /// - `vif` (required): the ingress vif id;
    /// - `hex`: the raw frame (Ethernet header first) instead of the fields below;
    /// - `src_mac` (default: the vif's VM MAC, else its own MAC), `dst_mac` (default: the
    ///   vRouter MAC);
    /// - `src_ip` (default: the vif's IP of the destination's family), `dst_ip` (required);
    /// - `proto` (`tcp`, `udp`, `icmp`, `icmp6` or a number; default `udp`), `src_port`
    ///   (default 49152), `dst_port` (default 80), `tcp_flags` (default `syn`), `ttl`
    ///   (default 64), `len`: IP payload bytes after the transport header (default 0).
    pub fn from_json(fib: &Fib, v: &Value) -> Result<FlowSpec, SpecError> {
        let id = num(v, "vif", u64::from(u16::MAX))?.ok_or_else(|| bad("vif", "missing (the ingress vif id)"))? as u16;
        let vif = fib.vif(id).ok_or_else(|| bad("vif", format!("no vif {id}")))?;
        if let Some(h) = field(v, "hex") {
            let frame = hex_bytes(h.as_str().ok_or_else(|| bad("hex", "must be a string of hex digits"))?)?;
            if frame.len() < ethernet::HEADER_LEN {
                return Err(bad("hex", format!("{} bytes: shorter than an Ethernet header", frame.len())));
            }
            return Ok(FlowSpec { vif: id, frame });
        }
        let src_mac = mac(v, "src_mac")?.unwrap_or(vif.vm_mac.unwrap_or(vif.mac));
        let dst_mac = mac(v, "dst_mac")?.unwrap_or(fib.router_mac);
        let dst = addr(v, "dst_ip")?.ok_or_else(|| bad("dst_ip", "missing"))?;
        let src = match (addr(v, "src_ip")?, dst) {
            (Some(s), _) => s,
            (None, IpAddr::V4(_)) => IpAddr::V4(vif.ip.ok_or_else(|| bad("src_ip", "missing (the vif has no IPv4)"))?),
            (None, IpAddr::V6(_)) => IpAddr::V6(vif.ip6.ok_or_else(|| bad("src_ip", "missing (the vif has no IPv6)"))?),
        };
        let v6 = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => false,
            (IpAddr::V6(_), IpAddr::V6(_)) => true,
            _ => return Err(bad("dst_ip", "src_ip and dst_ip must be of one family")),
        };
        let proto = protocol(v)?.unwrap_or(IpProtocol::UDP);
        let sport = num(v, "src_port", 65535)?.unwrap_or(49152) as u16;
        let dport = num(v, "dst_port", 65535)?.unwrap_or(80) as u16;
        let flags = tcp_flags(v)?.unwrap_or(0x02);
        let ttl = num(v, "ttl", 255)?.unwrap_or(64) as u8;
        let extra = num(v, "len", 9000)?.unwrap_or(0) as usize;
        let l4 = transport(proto, v6, sport, dport, flags, extra);
        let mut frame = Vec::with_capacity(ethernet::HEADER_LEN + 40 + l4.len());
        frame.extend_from_slice(&dst_mac);
        frame.extend_from_slice(&src_mac);
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                frame.extend_from_slice(&EtherType::IPV4.to_be_bytes());
                frame.extend_from_slice(&ipv4_header(s, d, proto, ttl, l4.len()));
                let mut l4 = l4;
                let pseudo = checksum::pseudo_header_v4(s, d, proto, l4.len() as u16);
                fill_l4_checksum(&mut l4, proto, pseudo);
                frame.extend_from_slice(&l4);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                frame.extend_from_slice(&EtherType::IPV6.to_be_bytes());
                frame.extend_from_slice(&ipv6_header(s, d, proto, ttl, l4.len()));
                let mut l4 = l4;
                let pseudo = checksum::pseudo_header_v6(s, d, proto, l4.len() as u32);
                fill_l4_checksum(&mut l4, proto, pseudo);
                frame.extend_from_slice(&l4);
            }
            _ => unreachable!("families checked above"),
        }
        Ok(FlowSpec { vif: id, frame })
    }
}

/// The transport header (and `extra` zero bytes): TCP (20), UDP (8), ICMP/ICMPv6 echo
/// request (8), else none.
fn transport(proto: u8, v6: bool, sport: u16, dport: u16, flags: u8, extra: usize) -> Vec<u8> {
    let mut h = match proto {
        IpProtocol::TCP => {
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&sport.to_be_bytes());
            t[2..4].copy_from_slice(&dport.to_be_bytes());
            t[12] = 5 << 4;
            t[13] = flags;
            t[14..16].copy_from_slice(&65535u16.to_be_bytes());
            t
        }
        IpProtocol::UDP => {
            let mut u = vec![0u8; 8];
            u[0..2].copy_from_slice(&sport.to_be_bytes());
            u[2..4].copy_from_slice(&dport.to_be_bytes());
            u
        }
        IpProtocol::ICMP if !v6 => vec![8, 0, 0, 0, 0, 1, 0, 1],
        IpProtocol::ICMPV6 if v6 => vec![128, 0, 0, 0, 0, 1, 0, 1],
        _ => Vec::new(),
    };
    h.resize(h.len() + extra, 0);
    if proto == IpProtocol::UDP {
        let len = h.len() as u16;
        h[4..6].copy_from_slice(&len.to_be_bytes());
    }
    h
}

fn fill_l4_checksum(l4: &mut [u8], proto: u8, pseudo: u32) {
    let at = match proto {
        IpProtocol::TCP => 16,
        IpProtocol::UDP => 6,
        // ICMP's checksum has no pseudo-header (ICMPv6's has).
        IpProtocol::ICMP => {
            if l4.len() >= 4 {
                let c = checksum::data(l4);
                l4[2..4].copy_from_slice(&(!c).to_be_bytes());
            }
            return;
        }
        IpProtocol::ICMPV6 => 2,
        _ => return,
    };
    if l4.len() < at + 2 {
        return;
    }
    let c = !checksum::combine(&[pseudo, u32::from(checksum::data(l4))]);
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn ipv4_header(s: Ipv4Addr, d: Ipv4Addr, proto: u8, ttl: u8, l4_len: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
    h[6] = 0x40; // DF
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&s.octets());
    h[16..20].copy_from_slice(&d.octets());
    let mut ip = ipv4::Packet::new_unchecked(&mut h[..]);
    ip.fill_checksum();
    h
}

fn ipv6_header(s: Ipv6Addr, d: Ipv6Addr, proto: u8, hop_limit: u8, l4_len: usize) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    h[6] = proto;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&s.octets());
    h[24..40].copy_from_slice(&d.octets());
    h
}

/// What the policy would decide for a packet without a flow (from the agent's policy
/// engine): the flow action, its `FLOW_DR_*` reason, the deciding rules and the action
/// string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyVerdict {
    /// The flow would forward.
    pub forward: bool,
    /// `FLOW_DR_*` code when it would drop.
    pub drop_reason: u8,
    /// UUID of the deciding (or first matching) network policy rule.
    pub rule: Option<String>,
    /// UUID of the deciding (or first matching) security group rule.
    pub sg_rule: Option<String>,
    /// The action string (`pass`, `deny|log`, ...).
    pub action: String,
}

impl PolicyVerdict {
    /// As JSON (`action`, `forward`, `flow_drop_reason`, `rule_uuid`, `sg_rule_uuid`).
    pub fn to_json(&self) -> Value {
        json!({
            "action": self.action, "forward": self.forward, "flow_drop_reason": self.drop_reason,
            "rule_uuid": self.rule, "sg_rule_uuid": self.sg_rule,
        })
    }
}

/// The simulation's recorder: the pipeline's decisions, and the policy's verdict when the
/// packet has no flow.
struct Simulated<F> {
    d: Decision,
    policy: F,
    /// The key the policy was asked about and its verdict (the packet had no flow).
    asked: Option<(FlowKey, PolicyVerdict)>,
}

/// A simulation counts nothing (it changes no counter).
impl<F> crate::pipeline::VrfCount for Simulated<F> {
    #[inline(always)]
    fn count(&mut self, _vrf: u32, _field: impl FnOnce(&mut vrouter_abi::stats::VrfCounters) -> &mut u64) {}
}

impl<F: FnMut(&FlowKey) -> PolicyVerdict> Record for Simulated<F> {
    const DRY_RUN: bool = true;

    fn route(&mut self, vrf: u32, by: RouteBy, nh: crate::fib::NhIdx) {
        self.d.route(vrf, by, nh);
    }

    fn member(&mut self, index: usize, nh: crate::fib::NhIdx) {
        self.d.member(index, nh);
    }

    fn flow(&mut self, index: u32, created: bool, entry: &flow_table::FlowEntry) {
        self.d.flow(index, created, entry);
    }

    fn no_flow(&mut self, key: &FlowKey) -> Action {
        let v = (self.policy)(key);
        let a = if v.forward { Action::Forward } else { Action::Drop };
        self.asked = Some((*key, v));
        a
    }
}

/// The result of a simulation.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The steps, as a recorded trace of the packet would have them (without the request
    /// match).
    pub steps: Vec<Step>,
    /// The pipeline's verdict.
    pub verdict: Verdict,
    /// The policy's verdict for the packet's flow key, when the packet had no flow (the
    /// verdict the flow's setup would give).
    pub policy: Option<PolicyVerdict>,
    /// The flow key the policy was asked about.
    pub key: Option<FlowKey>,
    /// The frame as it would leave (rewritten, encapsulated), for a transmit verdict.
    pub out: Vec<u8>,
}

/// Runs `spec` through the pipeline on `fib` with `table`'s flows (looked up only);
/// `policy` gives the verdict for a packet that has no flow.
pub fn run(
    fib: &Fib,
    table: Option<&FlowTable>,
    spec: &FlowSpec,
    policy: impl FnMut(&FlowKey) -> PolicyVerdict,
) -> Result<Simulation, SpecError> {
    let vif: &Vif = fib.vif(spec.vif).ok_or_else(|| bad("vif", format!("no vif {}", spec.vif)))?;
    let mut steps = vec![Step::Ingress { vif: vif.id, queue: 0, len: spec.frame.len() as u32 }];
    if let Some(p) = parse(fib, vif, &spec.frame) {
        parsed_steps(&p, |s| steps.push(s));
    }
    let mut pkt = VecBuf::new(crate::pipeline::MPLSOUDP_OVERHEAD + 64, &spec.frame);
    let mut rec = Simulated { d: Decision::default(), policy, asked: None };
    let verdict = match table {
        Some(t) => {
            let held = HoldStore::new(1, 1);
            let mut frags = FragTable::new(1, 1, 1);
            let mut stage = FlowStage {
                table: t,
                lcore: 0,
                now: 0,
                reinject: false,
                held_flow: None,
                may_create: false,
                pre: None,
                held: &held,
                mirror: None,
                frags: &mut frags,
            };
            crate::pipeline::process_with(fib, vif, &mut pkt, Some(&mut stage), &mut rec)
        }
        None => crate::pipeline::process_with(fib, vif, &mut pkt, None, &mut rec),
    };
    if let Some((_, p)) = &rec.asked {
        let rule = p.rule.as_deref().and_then(super::request::parse_uuid).unwrap_or([0; 16]);
        steps.push(Step::Policy { forward: p.forward, drop_reason: p.drop_reason, rule, flow: u32::MAX });
    }
    if flow_steps(&rec.d, verdict, |s| steps.push(s)) {
        route_steps(fib, &rec.d, verdict, &mut pkt, None, |s| steps.push(s));
    }
    let out = if matches!(verdict, Verdict::Tx(_)) { pkt.data().to_vec() } else { Vec::new() };
    let (key, policy) = match rec.asked {
        Some((k, p)) => (Some(k), Some(p)),
        None => (None, None),
    };
    Ok(Simulation { steps, verdict, policy, key, out })
}

use crate::pipeline::PacketBuf;

impl Simulation {
    /// The verdict in words: `forward on vif0/N`, `drop: <reason>`, `hold (flow N)`, ...
    pub fn verdict_text(&self) -> String {
        match self.verdict {
            Verdict::Tx(v) => format!("forward on vif0/{v}"),
            Verdict::Drop(r) => format!("drop: {}", r.name()),
            Verdict::Hold { flow, .. } => format!("hold: flow {flow} waits for its setup"),
            Verdict::FragWait => "wait: a later fragment waits for its first".into(),
            Verdict::Reply { drop, .. } => format!("drop: {} (answered)", drop.name()),
        }
    }

    /// The reply of `trace_simulate`: `verdict` (text), `steps` (each as JSON with its
    /// `text`), `encoded` (each step as `[kind, w0, w1, w2, w3]`, the records' stored form),
    /// `policy` (when the packet had no flow), `out_hex`.
    pub fn to_json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                let mut j = s.to_json();
                j["text"] = Value::from(s.render());
                j
            })
            .collect();
        let hex: String = self.out.iter().map(|b| format!("{b:02x}")).collect();
        // The steps in the trace records' stored form, for readers that decode and render
        // them with the step codec (the `trace` tool).
        let encoded: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                let (k, w) = s.encode();
                json!([k, w[0], w[1], w[2], w[3]])
            })
            .collect();
        json!({
            "ok": true,
            "verdict": self.verdict_text(),
            "steps": steps,
            "encoded": encoded,
            "policy": self.policy.as_ref().map(PolicyVerdict::to_json),
            "out_hex": hex,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::drop_reason::DropReason;
    use flow_table::{FlowTableConfig, FlowUpdate};

    const CFG: &str = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/unused"
router_ip = "10.10.0.1"
[[vif]]
id = 0
name = "fabric0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:01"
vrf = 0
[[vif]]
id = 1
name = "vm1"
type = "virtual"
device = "net_pcap1"
mac = "00:00:5e:00:01:00"
ip = "192.168.1.3"
vm_mac = "02:00:00:00:01:03"
vrf = 1
[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "vn1"
[[nexthop]]
id = 3
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.10.0.2"
label = 40
vif = 0
dst_mac = "02:00:00:00:00:02"
[[nexthop]]
id = 4
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.10.0.3"
label = 41
vif = 0
dst_mac = "02:00:00:00:00:02"
[[nexthop]]
id = 5
type = "ecmp"
members = [3, 4]
[[route]]
vrf = 1
prefix = "192.168.2.0/24"
nexthop = 5
"#;

    fn fib() -> Fib {
        Fib::from_config(&config::parse(CFG, "test.toml").unwrap()).unwrap()
    }

    fn table(dir: &tempfile::TempDir) -> FlowTable {
        let cfg = FlowTableConfig { main_entries: 1024, overflow_entries: 1024, max_lcores: 2 };
        FlowTable::create(&dir.path().join("flow"), &cfg).unwrap()
    }

    fn spec(fib: &Fib, v: Value) -> Result<FlowSpec, SpecError> {
        FlowSpec::from_json(fib, &v)
    }

    fn pass(_: &FlowKey) -> PolicyVerdict {
        PolicyVerdict { forward: true, rule: Some("8c2b4bd6-3ec4-4bd0-9f1f-2f4a4a7c0d01".into()), ..Default::default() }
    }

    #[test]
    fn bad_fields_are_named() {
        let f = fib();
        let field = |v: Value| spec(&f, v).unwrap_err().field;
        assert_eq!(field(json!({})), "vif");
        assert_eq!(field(json!({"vif": 9, "dst_ip": "192.168.2.7"})), "vif");
        assert_eq!(field(json!({"vif": 1})), "dst_ip");
        assert_eq!(field(json!({"vif": 1, "dst_ip": "192.168.2.x"})), "dst_ip");
        assert_eq!(field(json!({"vif": 1, "dst_ip": "192.168.2.7", "proto": "sctpx"})), "proto");
        assert_eq!(field(json!({"vif": 1, "dst_ip": "192.168.2.7", "dst_port": 70000})), "dst_port");
        assert_eq!(field(json!({"vif": 1, "dst_ip": "192.168.2.7", "tcp_flags": "syn,bogus"})), "tcp_flags");
        assert_eq!(field(json!({"vif": 1, "dst_ip": "192.168.2.7", "src_mac": "02:00"})), "src_mac");
        assert_eq!(field(json!({"vif": 1, "dst_ip": "fd00::1"})), "src_ip");
        assert_eq!(field(json!({"vif": 1, "hex": "0a0"})), "hex");
    }

    #[test]
    fn a_packet_without_a_flow_gets_the_policy_verdict_and_changes_nothing() {
        let (f, dir) = (fib(), tempfile::tempdir().unwrap());
        let t = table(&dir);
        let s = spec(&f, json!({"vif": 1, "dst_ip": "192.168.2.7", "proto": "tcp", "dst_port": 443})).unwrap();
        let sim = run(&f, Some(&t), &s, pass).unwrap();
        assert_eq!(sim.verdict, Verdict::Tx(0), "{:?}", sim.steps);
        assert_eq!(t.stats().created, 0, "no flow created");
        let names: Vec<_> = sim.steps.iter().map(Step::name).collect();
        assert_eq!(names, ["ingress", "parse", "addresses", "policy", "route", "ecmp", "encap", "egress"]);
        let Step::Route { prefix_len, nh_id, .. } = sim.steps[4] else { panic!() };
        assert_eq!((prefix_len, nh_id), (24, 5));
        let Step::Ecmp { nh_id, members, member_id, .. } = sim.steps[5] else { panic!() };
        assert_eq!((nh_id, members), (5, 2));
        assert!(member_id == 3 || member_id == 4);
        assert_eq!(sim.policy.as_ref().map(|p| p.forward), Some(true));
        let j = sim.to_json();
        assert_eq!(j["policy"]["rule_uuid"], "8c2b4bd6-3ec4-4bd0-9f1f-2f4a4a7c0d01");
        // Denied by policy: a flow drop.
        let deny = |_: &FlowKey| PolicyVerdict { forward: false, drop_reason: 3, ..Default::default() };
        let sim = run(&f, Some(&t), &s, deny).unwrap();
        assert_eq!(sim.verdict, Verdict::Drop(DropReason::FlowActionDrop));
        assert_eq!(t.stats().created, 0);
    }

    #[test]
    fn an_existing_flow_gives_its_action_and_is_not_counted() {
        let (f, dir) = (fib(), tempfile::tempdir().unwrap());
        let t = table(&dir);
        let s = spec(&f, json!({"vif": 1, "dst_ip": "192.168.2.7", "src_port": 1000, "dst_port": 53})).unwrap();
        let key =
            crate::pipeline::flow::key_v4(1, &ipv4::Packet::new_checked(&s.frame[ethernet::HEADER_LEN..]).unwrap());
        let idx = t.lookup_or_hold(&key, key.hash(), 1).unwrap().index();
        let gen = t.entry(idx).unwrap().gen();
        t.set_action(idx, gen, &FlowUpdate::new(Action::Forward)).unwrap();
        let before = t.snapshot(idx).unwrap().map(|x| (x.packets, x.bytes));
        let sim = run(&f, Some(&t), &s, |_: &FlowKey| panic!("policy asked for a packet with a flow")).unwrap();
        assert_eq!(sim.verdict, Verdict::Tx(0));
        assert!(sim.policy.is_none());
        assert!(matches!(sim.steps[3], Step::FlowLookup { hit: true, index, .. } if index == idx), "{:?}", sim.steps);
        assert!(matches!(sim.steps[4], Step::FlowAction { .. }));
        assert_eq!(t.snapshot(idx).unwrap().map(|x| (x.packets, x.bytes)), before, "flow counters unchanged");
        // Raw bytes: the same frame gives the same story.
        let hex: String = s.frame.iter().map(|b| format!("{b:02x}")).collect();
        let raw = spec(&f, json!({"vif": 1, "hex": hex})).unwrap();
        let again = run(&f, Some(&t), &raw, |_: &FlowKey| panic!()).unwrap();
        assert_eq!(again.steps, sim.steps);
    }
}
