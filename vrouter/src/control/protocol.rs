//! The requests of the control socket, typed: `{"cmd": "<name>", <fields>}` decoded into one
//! enum per component — the agent's own ([`AgentCommand`]), tracing ([`TraceCommand`],
//! `trace_*`) and mirroring ([`MirrorCommand`], `mirror_*`). [`Target::of`] says which
//! component a request is for (by the prefix of its `cmd`), and that component decodes it.
//!
//! A field of the wrong type is an error naming the field ([`ProtocolError`]); fields that
//! are not part of a command are ignored. Depends only on `serde`, `serde_json` and
//! `thiserror`, so that the tools can share it.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// No `cmd`, or one that is not a string.
    #[error("missing \"cmd\"")]
    MissingCmd,
    /// A `cmd` that the component does not know.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A field is missing or has the wrong type.
    #[error("{field}: {msg}")]
    Field {
        /// The field (`id`, `token`, …).
        field: String,
        /// What is wrong with it.
        msg: String,
    },
}

/// The component that serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The agent itself (`status`, `reload`, `flow`, `flows`, and any other name).
    Agent,
    /// Tracing: a `cmd` starting with `trace_`.
    Trace,
    /// Mirroring: a `cmd` starting with `mirror_`.
    Mirror,
}

impl Target {
    /// The component a request is for.
    pub fn of(v: &Value) -> Result<Target, ProtocolError> {
        let cmd = cmd_of(v).ok_or(ProtocolError::MissingCmd)?;
        Ok(if cmd.starts_with("trace_") {
            Target::Trace
        } else if cmd.starts_with("mirror_") {
            Target::Mirror
        } else {
            Target::Agent
        })
    }
}

/// The `cmd` of a request, when it is a string.
pub fn cmd_of(v: &Value) -> Option<&str> {
    v.get("cmd").and_then(Value::as_str)
}

/// The agent's own commands.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AgentCommand {
    /// The agent's counters and flow set-up latency.
    Status,
    /// Re-read the configuration file and re-evaluate the flows.
    Reload,
    /// The agent's state of flow `index` (an index that is missing or not a number is
    /// one that has no state).
    Flow {
        /// The flow index asked about; `None` when missing or not a number.
        #[serde(default, deserialize_with = "lenient")]
        index: Option<u64>,
    },
    /// The agent's state of several flows at once (`mirror --reconcile`: the rule of each
    /// mirrored flow); the reply's `metas` follow `indices`, `null` where there is none.
    Flows {
        /// The flow indices asked about.
        indices: Vec<u32>,
    },
    /// Any other name.
    #[serde(other)]
    Unknown,
}

impl AgentCommand {
    /// Decodes an agent request.
    pub fn decode(v: &Value) -> Result<AgentCommand, ProtocolError> {
        let cmd = cmd_of(v).ok_or(ProtocolError::MissingCmd)?;
        match decode(v)? {
            AgentCommand::Unknown => Err(ProtocolError::UnknownCommand(cmd.to_string())),
            c => Ok(c),
        }
    }
}

/// The caller of a `trace_*` request: a tenant's token, or none for the operator. Decoded
/// (and checked) before the command, so that a caller who may not send a command learns
/// nothing about what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TraceAuth {
    /// A tenant's token; none (or `null`) for the operator.
    #[serde(default, deserialize_with = "token")]
    pub token: Option<String>,
}

impl TraceAuth {
    /// Decodes the caller of a `trace_*` request.
    pub fn decode(v: &Value) -> Result<TraceAuth, ProtocolError> {
        decode(v)
    }
}

/// The tracing commands.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum TraceCommand {
    /// Adds a request.
    TraceAdd(TraceAdd),
    /// The caller's requests.
    TraceShow,
    /// One request.
    TraceGet(TraceId),
    /// Enables a request (its limit starts again).
    TraceEnable(TraceId),
    /// Disables a request.
    TraceDisable(TraceId),
    /// Removes a request.
    TraceRemove(TraceId),
    /// Removes every request of the caller.
    TraceFlush,
    /// The records of one request, or of every request the caller sees.
    TraceRecords {
        /// The request (none: all).
        #[serde(default, deserialize_with = "records_id")]
        id: Option<String>,
    },
    /// Simulates a packet: built from a flow description, run through the live pipeline
    /// and flow table without being sent or changing anything (answered by the agent).
    TraceSimulate(Box<TraceSimulate>),
    /// Any other `trace_` name.
    #[serde(other)]
    Unknown,
}

/// The fields of `trace_simulate`: the packet to simulate. Each is checked, naming the
/// field, when the packet is built (`vrouter::trace::simulate::FlowSpec`); absent or
/// `null` is the field's default.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, serde::Serialize)]
pub struct TraceSimulate {
    /// Ingress vif id (required).
    #[serde(default)]
    pub vif: Value,
    /// The raw frame as hex digits (Ethernet header first), instead of the fields below.
    #[serde(default)]
    pub hex: Value,
    /// Source MAC (default: the vif's VM MAC, else its own MAC).
    #[serde(default)]
    pub src_mac: Value,
    /// Destination MAC (default: the vRouter MAC).
    #[serde(default)]
    pub dst_mac: Value,
    /// Source IP (default: the vif's address).
    #[serde(default)]
    pub src_ip: Value,
    /// Destination IP (required unless `hex`).
    #[serde(default)]
    pub dst_ip: Value,
    /// `tcp`, `udp`, `icmp`, `icmp6` or a number (default `udp`).
    #[serde(default)]
    pub proto: Value,
    /// Source port (default 49152).
    #[serde(default)]
    pub src_port: Value,
    /// Destination port (default 80).
    #[serde(default)]
    pub dst_port: Value,
    /// TCP flags: names (`syn,ack`) or a number (default `syn`).
    #[serde(default)]
    pub tcp_flags: Value,
    /// IPv4 TTL / IPv6 hop limit (default 64).
    #[serde(default)]
    pub ttl: Value,
    /// Payload bytes after the transport header (default 0).
    #[serde(default)]
    pub len: Value,
}

/// The request a command is about. An id that is missing or not a string is `None`, which
/// the command refuses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TraceId {
    /// The request's UUID.
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
}

/// The fields of `trace_add`. The condition, scope and limit are checked, field by field,
/// by the trace request parser (absent or `null`: match anything, the whole vRouter, the
/// default limit).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TraceAdd {
    /// The packet fields to match.
    #[serde(default)]
    pub condition: Value,
    /// Where to trace.
    #[serde(default)]
    pub scope: Value,
    /// How much to trace.
    #[serde(default)]
    pub limit: Value,
    /// Enabled at once (default: no).
    #[serde(default, deserialize_with = "enabled")]
    pub enabled: Option<bool>,
    /// A chosen request id (the operator's only; default: a new UUID).
    #[serde(default, deserialize_with = "add_id")]
    pub id: Option<String>,
}

impl TraceCommand {
    /// Decodes a `trace_*` command; an unknown one is `TraceCommand::Unknown`.
    pub fn decode(v: &Value) -> Result<TraceCommand, ProtocolError> {
        decode(v)
    }
}

impl TraceAdd {
    /// Decodes the fields of `trace_add` (any `cmd` is ignored).
    pub fn decode(v: &Value) -> Result<TraceAdd, ProtocolError> {
        decode(v)
    }
}

/// The mirroring commands.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum MirrorCommand {
    /// Adds an analyzer.
    MirrorCreate(MirrorCreate),
    /// Removes an analyzer.
    MirrorDelete(MirrorSelect),
    /// One analyzer.
    MirrorGet(MirrorSelect),
    /// Every analyzer.
    MirrorDump,
    /// Any other `mirror_` name.
    #[serde(other)]
    Unknown,
}

impl MirrorCommand {
    /// Decodes a `mirror_*` request; an unknown command is `MirrorCommand::Unknown`.
    pub fn decode(v: &Value) -> Result<MirrorCommand, ProtocolError> {
        decode(v)
    }
}

/// The analyzer a command is about: by `name` when it is a string, else by `index` when it
/// is a number (else the command refuses it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MirrorSelect {
    /// The analyzer's name.
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    /// The mirror index.
    #[serde(default, deserialize_with = "lenient")]
    pub index: Option<u64>,
}

/// The fields of `mirror_create`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MirrorCreate {
    /// The analyzer's name (required).
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    /// The analyzer's IPv4 address (required).
    #[serde(default, deserialize_with = "lenient")]
    pub ip: Option<String>,
    /// Its UDP port.
    #[serde(default, deserialize_with = "udp_port")]
    pub udp_port: Option<u16>,
    /// `dynamic` or `static`.
    #[serde(default, deserialize_with = "nh_mode")]
    pub nh_mode: Option<String>,
    /// Whether copies carry the Juniper header.
    #[serde(default, deserialize_with = "juniper_header")]
    pub juniper_header: Option<bool>,
    /// The VNI of the copies.
    #[serde(default, deserialize_with = "vni")]
    pub vni: Option<u32>,
    /// The mirror index (default: the lowest free one).
    #[serde(default, deserialize_with = "create_index")]
    pub index: Option<u32>,
}

/// Decodes `T` from a request, turning serde's errors into [`ProtocolError`].
fn decode<T: DeserializeOwned>(v: &Value) -> Result<T, ProtocolError> {
    if !v.is_object() {
        // serde would also take a struct from an array, by position.
        return Err(ProtocolError::Field { field: "request".into(), msg: "must be a JSON object".into() });
    }
    T::deserialize(v).map_err(|e| {
        let text = e.to_string();
        if let Some(f) = text.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            if f == "cmd" {
                return ProtocolError::MissingCmd;
            }
            return ProtocolError::Field { field: f.to_string(), msg: "missing".into() };
        }
        // The field deserializers below say `<field>: <message>`.
        match text.split_once(": ") {
            Some((f, msg)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                ProtocolError::Field { field: f.to_string(), msg: msg.to_string() }
            }
            _ => ProtocolError::Field { field: "request".into(), msg: text },
        }
    })
}

/// A field read when it has the expected type and taken as absent otherwise (what the
/// socket has always done for these fields).
fn lenient<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(T::deserialize(v).ok())
}

/// A field that must have type `T` when given (`null` is not given); `field: msg` otherwise.
fn strict<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D, field: &str, msg: &str) -> Result<Option<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => T::deserialize(v).map(Some).map_err(|_| D::Error::custom(format!("{field}: {msg}"))),
    }
}

/// A field that must have type `T` when present, even as `null`: `field: msg` otherwise.
fn strict_present<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
    field: &str,
    msg: &str,
) -> Result<Option<T>, D::Error> {
    T::deserialize(Value::deserialize(d)?).map(Some).map_err(|_| D::Error::custom(format!("{field}: {msg}")))
}

fn token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    strict(d, "token", "must be a string")
}

fn records_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    strict(d, "id", "must be a trace request UUID string")
}

fn enabled<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    strict(d, "enabled", "must be true or false")
}

fn add_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    strict_present(d, "id", "must be a UUID string")
}

fn udp_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    strict_present(d, "udp_port", "not a port number")
}

fn nh_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    strict_present(d, "nh_mode", "not a string")
}

fn juniper_header<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    strict_present(d, "juniper_header", "not a boolean")
}

fn vni<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    strict_present(d, "vni", "not a number")
}

fn create_index<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    strict_present(d, "index", "not a number")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(r: Result<impl std::fmt::Debug, ProtocolError>) -> (String, String) {
        match r {
            Err(ProtocolError::Field { field, msg }) => (field, msg),
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn targets_by_prefix() {
        assert_eq!(Target::of(&json!({"cmd": "trace_show"})), Ok(Target::Trace));
        assert_eq!(Target::of(&json!({"cmd": "mirror_nope"})), Ok(Target::Mirror));
        assert_eq!(Target::of(&json!({"cmd": "status"})), Ok(Target::Agent));
        assert_eq!(Target::of(&json!({"cmd": 5})), Err(ProtocolError::MissingCmd));
        assert_eq!(Target::of(&json!({})), Err(ProtocolError::MissingCmd));
    }

    #[test]
    fn agent_commands() {
        assert_eq!(AgentCommand::decode(&json!({"cmd": "status", "extra": 1})), Ok(AgentCommand::Status));
        assert_eq!(AgentCommand::decode(&json!({"cmd": "reload"})), Ok(AgentCommand::Reload));
        assert_eq!(
            AgentCommand::decode(&json!({"cmd": "flow", "index": 7})),
            Ok(AgentCommand::Flow { index: Some(7) })
        );
        assert_eq!(AgentCommand::decode(&json!({"cmd": "flow", "index": "x"})), Ok(AgentCommand::Flow { index: None }));
        assert_eq!(AgentCommand::decode(&json!({"cmd": "flow"})), Ok(AgentCommand::Flow { index: None }));
        assert_eq!(
            AgentCommand::decode(&json!({"cmd": "flows", "indices": [3, 9]})),
            Ok(AgentCommand::Flows { indices: vec![3, 9] })
        );
        assert!(AgentCommand::decode(&json!({"cmd": "flows"})).is_err(), "indices is required");
        let e = AgentCommand::decode(&json!({"cmd": "nope"})).unwrap_err();
        assert_eq!(e.to_string(), "unknown command \"nope\"");
        assert_eq!(AgentCommand::decode(&json!({"x": 1})).unwrap_err().to_string(), "missing \"cmd\"");
    }

    #[test]
    fn trace_commands_name_the_bad_field() {
        let v = json!({"cmd": "trace_get", "id": "abc", "token": "t"});
        assert_eq!(TraceAuth::decode(&v), Ok(TraceAuth { token: Some("t".into()) }));
        assert_eq!(TraceCommand::decode(&v), Ok(TraceCommand::TraceGet(TraceId { id: Some("abc".into()) })));
        let v = json!({"cmd": "trace_enable", "id": 7, "token": null});
        assert_eq!(TraceAuth::decode(&v), Ok(TraceAuth { token: None }));
        assert_eq!(TraceCommand::decode(&v), Ok(TraceCommand::TraceEnable(TraceId { id: None })));
        assert_eq!(TraceCommand::decode(&json!({"cmd": "trace_nope"})), Ok(TraceCommand::Unknown));
        assert_eq!(TraceCommand::decode(&json!({"id": "x"})), Err(ProtocolError::MissingCmd));
        assert_eq!(
            field(TraceAuth::decode(&json!({"cmd": "trace_show", "token": 7}))),
            ("token".into(), "must be a string".into())
        );
        assert_eq!(
            field(TraceCommand::decode(&json!({"cmd": "trace_records", "id": 7}))),
            ("id".into(), "must be a trace request UUID string".into())
        );
        assert_eq!(
            TraceCommand::decode(&json!({"cmd": "trace_records", "id": null})),
            Ok(TraceCommand::TraceRecords { id: None })
        );
        let add = TraceCommand::decode(&json!({"cmd": "trace_add", "scope": {"vif": 1}, "enabled": true})).unwrap();
        let TraceCommand::TraceAdd(a) = add else { panic!("{add:?}") };
        assert_eq!((a.scope, a.condition, a.enabled, a.id), (json!({"vif": 1}), Value::Null, Some(true), None));
        assert_eq!(
            field(TraceCommand::decode(&json!({"cmd": "trace_add", "enabled": "yes"}))),
            ("enabled".into(), "must be true or false".into())
        );
        assert_eq!(field(TraceAdd::decode(&json!({"id": null}))).0, "id");
        assert_eq!(field(TraceAdd::decode(&json!([1]))), ("request".into(), "must be a JSON object".into()));
        assert_eq!(field(TraceCommand::decode(&json!(["trace_show"]))).0, "request");
    }

    #[test]
    fn mirror_commands_name_the_bad_field() {
        let c = MirrorCommand::decode(&json!({"cmd": "mirror_create", "name": "a", "ip": "10.0.0.1", "udp_port": 9000, "vni": 5, "juniper_header": false, "nh_mode": "static", "index": 3})).unwrap();
        assert_eq!(
            c,
            MirrorCommand::MirrorCreate(MirrorCreate {
                name: Some("a".into()),
                ip: Some("10.0.0.1".into()),
                udp_port: Some(9000),
                nh_mode: Some("static".into()),
                juniper_header: Some(false),
                vni: Some(5),
                index: Some(3),
            })
        );
        let bad = |v: Value| field(MirrorCommand::decode(&v));
        assert_eq!(
            bad(json!({"cmd": "mirror_create", "udp_port": 70000})),
            ("udp_port".into(), "not a port number".into())
        );
        assert_eq!(bad(json!({"cmd": "mirror_create", "nh_mode": 1})), ("nh_mode".into(), "not a string".into()));
        assert_eq!(
            bad(json!({"cmd": "mirror_create", "juniper_header": 1})),
            ("juniper_header".into(), "not a boolean".into())
        );
        assert_eq!(bad(json!({"cmd": "mirror_create", "vni": -1})), ("vni".into(), "not a number".into()));
        assert_eq!(bad(json!({"cmd": "mirror_create", "index": "x"})), ("index".into(), "not a number".into()));
        assert_eq!(
            MirrorCommand::decode(&json!({"cmd": "mirror_delete", "name": 5, "index": 2})),
            Ok(MirrorCommand::MirrorDelete(MirrorSelect { name: None, index: Some(2) }))
        );
        assert_eq!(MirrorCommand::decode(&json!({"cmd": "mirror_dump"})), Ok(MirrorCommand::MirrorDump));
        assert_eq!(MirrorCommand::decode(&json!({"cmd": "mirror_x"})), Ok(MirrorCommand::Unknown));
    }
}
