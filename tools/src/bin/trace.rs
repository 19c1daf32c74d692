//! `trace`: live packet tracing on a running vRouter, in the spirit of MidoNet's `mm-trace`.
//! Requests are managed over the agent's control socket (`add`, `enable`, `disable`,
//! `remove`, `flush`, `show`); traces are read from the trace region (`list`, `get`), which
//! only the vRouter's user may read, or, with `--token`, a tenant's own traces are asked of
//! the vRouter over the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tools::trace::{collect, parse_trace_id, render_get, render_get_json, render_list, render_list_json, Trace};
use tools::{emit, fail, Failure, DEFAULT_RUN_DIR};
use vrouter_abi::trace::region::RegionInfo;
use vrouter_abi::trace::step::Step;
use vrouter_abi::trace::view::record_from_json;
use vrouter_abi::trace::TraceReader;

#[derive(Parser, Debug)]
#[command(name = "trace", version, about = "Live packet tracing: trace requests and the traces they record")]
struct Cli {
    /// Run directory of the vRouter (holds control.sock and the trace region).
    #[arg(long, value_name = "DIR", env = "VROUTER_RUN_DIR", default_value = DEFAULT_RUN_DIR, global = true)]
    run_dir: PathBuf,
    /// Machine-readable JSON output.
    #[arg(short = 'j', long, global = true)]
    json: bool,
    /// Indent the JSON output.
    #[arg(long, global = true)]
    pretty: bool,
    /// A tenant's token (`[[tenant]]`): requests are then limited to the tenant's own vifs
    /// and VNs, only its own requests are visible, and `list`/`get` show only the traces of
    /// its requests (asked of the vRouter instead of read from the trace region).
    #[arg(long, value_name = "TOKEN", env = "VROUTER_TRACE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Add a trace request (disabled unless --enable).
    Add(AddArgs),
    /// Trace requests and their state.
    Show,
    /// Traces recorded: id, time, packets, steps, flow, final disposition.
    List {
        /// Only the traces of this trace request (UUID).
        #[arg(long, value_name = "UUID")]
        request: Option<String>,
    },
    /// The step-by-step story of one trace (with --peer: continued on other vRouters, whose
    /// run directories are given, merged after this one's steps).
    Get {
        id: String,
        /// Run directory of another vRouter the traced packets went on to.
        #[arg(long, value_name = "DIR")]
        peer: Vec<PathBuf>,
    },
    /// Enable a request (restarts its limit).
    Enable { id: String },
    /// Disable a request (recorded traces stay readable).
    Disable { id: String },
    /// Remove a request.
    Remove { id: String },
    /// Remove every request.
    Flush,
    /// Simulate a packet: built from the flow given here, run through the live pipeline and
    /// flow table without being sent or changing anything; prints the steps a trace of it
    /// would record, the verdict, and (for a packet without a flow) the policy's verdict.
    Simulate(SimArgs),
}

#[derive(clap::Args, Debug)]
struct SimArgs {
    /// Ingress vif id.
    #[arg(long, value_name = "VIF")]
    vif: u16,
    /// Source MAC (default: the vif's VM MAC).
    #[arg(long, value_name = "MAC")]
    src_mac: Option<String>,
    /// Destination MAC (default: the vRouter MAC).
    #[arg(long, value_name = "MAC")]
    dst_mac: Option<String>,
    /// Source IP (default: the vif's address).
    #[arg(long, value_name = "IP")]
    src_ip: Option<String>,
    /// Destination IP.
    #[arg(long, value_name = "IP")]
    dst_ip: Option<String>,
    /// IP protocol: tcp, udp, icmp, icmp6 or a number (default udp).
    #[arg(long, value_name = "PROTO")]
    proto: Option<String>,
    /// Source port (default 49152).
    #[arg(long, value_name = "PORT")]
    src_port: Option<String>,
    /// Destination port (default 80).
    #[arg(long, value_name = "PORT")]
    dst_port: Option<String>,
    /// TCP flags: syn, ack, fin, rst, psh, urg joined by commas, or a number (default syn).
    #[arg(long, value_name = "FLAGS")]
    tcp_flags: Option<String>,
    /// TTL / hop limit (default 64).
    #[arg(long, value_name = "N")]
    ttl: Option<String>,
    /// The raw frame as hex (Ethernet header first) instead of the fields above.
    #[arg(long, value_name = "HEX")]
    hex: Option<String>,
}

fn simulate_request(a: &SimArgs) -> Value {
    let mut c = json!({"cmd": "trace_simulate", "vif": a.vif});
    let fields = [
        ("src_mac", &a.src_mac),
        ("dst_mac", &a.dst_mac),
        ("src_ip", &a.src_ip),
        ("dst_ip", &a.dst_ip),
        ("proto", &a.proto),
        ("src_port", &a.src_port),
        ("dst_port", &a.dst_port),
        ("tcp_flags", &a.tcp_flags),
        ("ttl", &a.ttl),
        ("hex", &a.hex),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            c[k] = Value::from(v.clone());
        }
    }
    c
}

/// The steps of a `trace_simulate` reply, decoded from their stored form.
fn simulated_steps(r: &Value) -> Result<Vec<Step>, Failure> {
    let bad = || Failure("bad reply from the vRouter: encoded steps".into());
    r["encoded"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|e| {
            let n: Vec<u64> = e.as_array().ok_or_else(bad)?.iter().filter_map(Value::as_u64).collect();
            let [k, a, b, c, d] = n[..] else { return Err(bad()) };
            Step::decode(k as u16, [a, b, c, d]).ok_or_else(bad)
        })
        .collect()
}

fn render_simulation(vif: u16, r: &Value, steps: &[Step]) -> String {
    let mut s = format!("Simulated packet entering vif0/{vif} (not sent, nothing counted or created)\n");
    for (i, st) in steps.iter().enumerate() {
        s.push_str(&format!("  {:>2}. {}\n", i + 1, st.render()));
    }
    s.push_str(&format!("Verdict: {}\n", r["verdict"].as_str().unwrap_or("?")));
    if let Some(p) = r["policy"].as_object() {
        let rule = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        s.push_str(&format!(
            "No flow: the policy would give {} (network policy rule {}, security group rule {})\n",
            p.get("action").and_then(Value::as_str).unwrap_or("?"),
            rule("rule_uuid"),
            rule("sg_rule_uuid")
        ));
    }
    s
}

#[derive(clap::Args, Debug)]
struct AddArgs {
    #[arg(long, value_name = "MAC")]
    mac_src: Option<String>,
    #[arg(long, value_name = "MAC")]
    mac_dst: Option<String>,
    /// Ethertype (decimal or 0x hex).
    #[arg(long, value_name = "N")]
    ethertype: Option<String>,
    /// Source IP address or prefix.
    #[arg(long, value_name = "IP[/LEN]")]
    ip_src: Option<String>,
    /// Destination IP address or prefix.
    #[arg(long, value_name = "IP[/LEN]")]
    ip_dst: Option<String>,
    /// IP protocol: number, or tcp, udp, icmp, icmp6.
    #[arg(long, value_name = "PROTO")]
    ip_protocol: Option<String>,
    #[arg(long, value_name = "PORT")]
    src_port: Option<u16>,
    #[arg(long, value_name = "PORT")]
    dst_port: Option<u16>,
    /// Ingress vif id.
    #[arg(long, value_name = "VIF")]
    ingress_vif: Option<u16>,
    #[arg(long, value_name = "VRF")]
    vrf: Option<u32>,
    /// Scope: trace only packets entering this vif.
    #[arg(long, value_name = "VIF", conflicts_with = "vn")]
    vif: Option<u16>,
    /// Scope: trace only packets entering the vifs of this virtual network.
    #[arg(long, value_name = "VN")]
    vn: Option<String>,
    /// Packets to trace (default 10).
    #[arg(short, long, value_name = "N", conflicts_with = "flows")]
    limit: Option<u32>,
    /// Trace the first N flows instead of a number of packets.
    #[arg(long, value_name = "N")]
    flows: Option<u32>,
    /// Enable the request at once.
    #[arg(long)]
    enable: bool,
}

fn request(cli: &Cli, req: &Value) -> Result<Value, Failure> {
    request_at(cli, &cli.run_dir, req)
}

fn request_at(cli: &Cli, run_dir: &std::path::Path, req: &Value) -> Result<Value, Failure> {
    let path = run_dir.join("control.sock");
    let mut s = UnixStream::connect(&path)
        .map_err(|e| Failure(format!("vRouter is not running (cannot connect to {}: {e})", path.display())))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = req.clone();
    if let Some(t) = &cli.token {
        req["token"] = Value::from(t.clone());
    }
    writeln!(s, "{req}").map_err(|e| Failure(format!("sending to {}: {e}", path.display())))?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .map_err(|e| Failure(format!("reading the reply from {}: {e}", path.display())))?;
    let reply: Value =
        serde_json::from_str(&line).map_err(|e| Failure(format!("bad reply from the vRouter: {e}: {line:?}")))?;
    if reply["ok"] != true {
        return Err(Failure(format!("trace: {}", reply["error"].as_str().unwrap_or("request failed"))));
    }
    Ok(reply)
}

fn number(field: &str, s: &str) -> Result<u64, Failure> {
    let t = s.trim();
    let r = match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| Failure(format!("{field}: {s:?} is not a number")))
}

fn add_request(a: &AddArgs) -> Result<Value, Failure> {
    let mut c = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        c.insert(k.into(), v);
    };
    if let Some(m) = &a.mac_src {
        put("src_mac", m.clone().into());
    }
    if let Some(m) = &a.mac_dst {
        put("dst_mac", m.clone().into());
    }
    if let Some(e) = &a.ethertype {
        put("ethertype", number("--ethertype", e)?.into());
    }
    if let Some(x) = &a.ip_src {
        put("src_ip", x.clone().into());
    }
    if let Some(x) = &a.ip_dst {
        put("dst_ip", x.clone().into());
    }
    if let Some(p) = &a.ip_protocol {
        let n = match p.to_ascii_lowercase().as_str() {
            "tcp" => 6,
            "udp" => 17,
            "icmp" => 1,
            "icmp6" | "icmpv6" => 58,
            other => number("--ip-protocol", other)?,
        };
        put("protocol", n.into());
    }
    if let Some(p) = a.src_port {
        put("src_port", p.into());
    }
    if let Some(p) = a.dst_port {
        put("dst_port", p.into());
    }
    if let Some(v) = a.ingress_vif {
        put("ingress_vif", v.into());
    }
    if let Some(v) = a.vrf {
        put("vrf", v.into());
    }
    let scope = match (&a.vif, &a.vn) {
        (Some(v), _) => json!({"vif": v}),
        (None, Some(vn)) => json!({"vn": vn}),
        _ => json!("vrouter"),
    };
    let limit = match (a.limit, a.flows) {
        (_, Some(f)) => json!({"flows": f}),
        (Some(n), None) => json!({"packets": n}),
        (None, None) => Value::Null,
    };
    Ok(json!({"cmd": "trace_add", "condition": c, "scope": scope, "limit": limit, "enabled": a.enable}))
}

fn render_request(r: &Value) -> String {
    let cond = r["condition"].as_object().map_or(String::new(), |o| {
        o.iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let scope = match r["scope"]["type"].as_str() {
        Some("vif") => format!("vif {}", r["scope"]["vif"]),
        Some("vn") => format!("vn {}", r["scope"]["vn"].as_str().unwrap_or("")),
        _ => "vrouter".into(),
    };
    let limit = if let Some(n) = r["limit"]["packets"].as_u64() {
        format!("{n} packets")
    } else {
        format!("{} flows", r["limit"]["flows"])
    };
    format!(
        "{}  {:<13} scope {:<10} limit {:<11} left {:<6} {}\n",
        r["id"].as_str().unwrap_or("?"),
        r["state"].as_str().unwrap_or("?"),
        scope,
        limit,
        r["remaining"],
        if cond.is_empty() { "(match all)".into() } else { cond }
    )
}

fn out_json(v: &Value, pretty: bool) -> String {
    let mut s = if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) }.expect("json");
    s.push('\n');
    s
}

fn run(cli: &Cli) -> Result<String, Failure> {
    let j = cli.json;
    let one = |verb: &str, cmd: &str, id: &str| -> Result<String, Failure> {
        let r = request(cli, &json!({"cmd": cmd, "id": id}))?;
        Ok(if j {
            out_json(&r["request"], cli.pretty)
        } else {
            format!("trace request {} {verb}\n", r["request"]["id"].as_str().unwrap_or(id))
        })
    };
    match &cli.cmd {
        Cmd::Add(a) => {
            let r = request(cli, &add_request(a)?)?;
            Ok(if j { out_json(&r["request"], cli.pretty) } else { render_request(&r["request"]) })
        }
        Cmd::Show => {
            let r = request(cli, &json!({"cmd": "trace_show"}))?;
            if j {
                return Ok(out_json(&r["requests"], cli.pretty));
            }
            let reqs = r["requests"].as_array().cloned().unwrap_or_default();
            let mut text = String::new();
            if r["recording"] == false {
                text.push_str("note: this vRouter was built without the `trace` feature: nothing is recorded\n");
            }
            if reqs.is_empty() {
                text.push_str("(no trace requests)\n");
            }
            text.extend(reqs.iter().map(render_request));
            Ok(text)
        }
        Cmd::Enable { id } => one("enabled", "trace_enable", id),
        Cmd::Disable { id } => one("disabled", "trace_disable", id),
        Cmd::Remove { id } => one("removed", "trace_remove", id),
        Cmd::Simulate(a) => {
            let r = request(cli, &simulate_request(a))?;
            let steps = simulated_steps(&r)?;
            if j {
                let mut v = r.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("ok");
                    o.remove("encoded");
                }
                return Ok(out_json(&v, cli.pretty));
            }
            Ok(render_simulation(a.vif, &r, &steps))
        }
        Cmd::Flush => {
            let r = request(cli, &json!({"cmd": "trace_flush"}))?;
            Ok(if j { out_json(&r, cli.pretty) } else { format!("Removed {} trace request(s)\n", r["removed"]) })
        }
        Cmd::List { .. } | Cmd::Get { .. } => {
            let of_request = match &cli.cmd {
                Cmd::List { request } => request.as_deref(),
                _ => None,
            };
            if let Cmd::Get { id, .. } = &cli.cmd {
                parse_trace_id(id).ok_or_else(|| Failure(format!("id: {id:?} is not a trace id (hex)")))?;
            }
            let (info, traces) = load_traces(cli, &cli.run_dir, of_request)?;
            if let Cmd::Get { id, peer } = &cli.cmd {
                let n = parse_trace_id(id).ok_or_else(|| Failure(format!("id: {id:?} is not a trace id (hex)")))?;
                let mut hosts = Vec::new();
                if let Some(t) = traces.iter().find(|t| t.id == n) {
                    hosts.push((cli.run_dir.clone(), t.clone(), info));
                }
                for dir in peer {
                    let (info, ts) = load_traces(cli, dir, None)
                        .map_err(|e| Failure(format!("--peer {}: {}", dir.display(), e.0)))?;
                    if let Some(t) = ts.into_iter().find(|t| t.id == n) {
                        hosts.push((dir.clone(), t, info));
                    }
                }
                if hosts.is_empty() {
                    return Err(Failure(format!("id: no trace {n:016x}")));
                }
                if peer.is_empty() {
                    let (_, t, info) = &hosts[0];
                    return Ok(if j { render_get_json(t, info, cli.pretty) } else { render_get(t, info) });
                }
                if j {
                    let v: Vec<Value> = hosts
                        .iter()
                        .map(|(d, t, info)| {
                            let one: Value = serde_json::from_str(&render_get_json(t, info, false)).expect("json");
                            json!({"run_dir": d.display().to_string(), "trace": one})
                        })
                        .collect();
                    return Ok(out_json(&json!({"trace_id": format!("{n:016x}"), "hosts": v}), cli.pretty));
                }
                let mut text = String::new();
                for (d, t, info) in &hosts {
                    text.push_str(&format!("=== vRouter at {} ===\n", d.display()));
                    text.push_str(&render_get(t, info));
                    text.push('\n');
                }
                return Ok(text);
            }
            Ok(if j { render_list_json(&traces, &info, cli.pretty) } else { render_list(&traces, &info) })
        }
    }
}

/// The traces of the vRouter in `run_dir` the caller may read: with a token, asked of the
/// vRouter (only the tenant's own, of `request` when given); without, every trace, read
/// from the region file.
fn load_traces(
    cli: &Cli,
    run_dir: &std::path::Path,
    request: Option<&str>,
) -> Result<(RegionInfo, Vec<Trace>), Failure> {
    if cli.token.is_none() {
        let reader = TraceReader::open_run_dir(run_dir).map_err(|e| Failure(e.to_string()))?;
        let mut traces = collect(&reader.records());
        if let Some(id) = request {
            let want = vrouter_abi::trace::uuid::parse_uuid(id)
                .ok_or_else(|| Failure(format!("--request: {id:?} is not a UUID")))?;
            traces.retain(|t| t.request_uuid() == Some(want));
        }
        return Ok((reader.info(), traces));
    }
    let r = request_at(cli, run_dir, &json!({"cmd": "trace_records", "id": request}))?;
    let info: RegionInfo = serde_json::from_value(r["region"].clone())
        .map_err(|e| Failure(format!("bad reply from the vRouter: region: {e}")))?;
    let recs = r["records"].as_array().ok_or_else(|| Failure("bad reply from the vRouter: no records".into()))?;
    let recs = recs
        .iter()
        .map(|v| record_from_json(v).ok_or_else(|| Failure(format!("bad reply from the vRouter: record {v}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((info, collect(&recs)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => emit(&out),
        Err(e) => fail(&e),
    }
}
