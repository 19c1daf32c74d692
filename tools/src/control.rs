//! The one control-socket client of the tools: connect to `<run_dir>/control.sock`, send one
//! JSON request line, read one JSON reply line, and map `{"ok": false, "error": ...}` to a
//! [`Failure`] named after the tool (`rt: route[0].nexthop: nexthop 99 is not defined`).
//!
//! The contract (commands, typed replies) is `vrouter_abi::control`; [`Client::call`] and
//! its typed helpers deserialize the replies into those structs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use vrouter_abi::agent::AgentStatus;
use vrouter_abi::control::{ChangeReply, InfoReply, LabelEntry, NexthopEntry, RouteEntry, VifEntry};

use crate::Failure;

/// How long a request may take before the tool gives up on the reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no good reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The socket could not be reached: the vRouter is not running (or not here).
    Unreachable(String),
    /// The vRouter refused the request; its `error` text.
    Refused(String),
    /// Writing, reading or decoding the reply failed.
    Broken(String),
}

impl ControlError {
    /// The tool's failure: a refusal as `<tool>: <error>`, anything else as it is.
    pub fn into_failure(self, tool: &str) -> Failure {
        match self {
            ControlError::Refused(e) => Failure(format!("{tool}: {e}")),
            ControlError::Unreachable(e) | ControlError::Broken(e) => Failure(e),
        }
    }
}

/// A client of one vRouter's control socket; each request opens its own connection.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    tool: &'static str,
}

impl Client {
    /// The client of `<run_dir>/control.sock`; `tool` prefixes the vRouter's errors.
    pub fn new(run_dir: &Path, tool: &'static str) -> Client {
        Client { path: run_dir.join("control.sock"), tool }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `req` and returns the reply object (with `"ok": true`), or why not.
    pub fn try_request(&self, req: &Value) -> Result<Value, ControlError> {
        let p = self.path.display();
        let mut s = UnixStream::connect(&self.path)
            .map_err(|e| ControlError::Unreachable(format!("vRouter is not running (cannot connect to {p}: {e})")))?;
        s.set_read_timeout(Some(REPLY_TIMEOUT)).ok();
        writeln!(s, "{req}").map_err(|e| ControlError::Broken(format!("sending to {p}: {e}")))?;
        let mut line = String::new();
        BufReader::new(&s)
            .read_line(&mut line)
            .map_err(|e| ControlError::Broken(format!("reading the reply from {p}: {e}")))?;
        if line.trim().is_empty() {
            return Err(ControlError::Broken(format!("no reply from {p} (the vRouter closed the connection)")));
        }
        parse_reply(&line)
    }

    /// [`try_request`](Self::try_request) with the error as the tool's [`Failure`].
    pub fn request(&self, req: &Value) -> Result<Value, Failure> {
        self.try_request(req).map_err(|e| e.into_failure(self.tool))
    }

    /// Sends `req` and deserializes the reply's `field` as `T` (a `null` field reads as
    /// `T`'s `null`, e.g. `None`).
    pub fn try_call<T: DeserializeOwned>(&self, req: &Value, field: &str) -> Result<T, ControlError> {
        let reply = self.try_request(req)?;
        field_of(&reply, field)
    }

    /// [`try_call`](Self::try_call) with the error as the tool's [`Failure`].
    pub fn call<T: DeserializeOwned>(&self, req: &Value, field: &str) -> Result<T, Failure> {
        self.try_call(req, field).map_err(|e| e.into_failure(self.tool))
    }

    /// A change request (`*_set`, `*_delete`): its [`ChangeReply`].
    pub fn change(&self, req: &Value) -> Result<ChangeReply, Failure> {
        let reply = self.request(req)?;
        serde_json::from_value(reply).map_err(|e| Failure(format!("bad reply from the vRouter: {e}")))
    }

    /// `route_dump` of one VRF and family.
    pub fn route_dump(&self, vrf: u32, family: &str) -> Result<Vec<RouteEntry>, Failure> {
        self.call(&serde_json::json!({"cmd": "route_dump", "vrf": vrf, "family": family}), "routes")
    }

    /// `route_lookup` of an IP address or a MAC in a VRF: the matching route, if any.
    pub fn try_route_lookup(&self, vrf: u32, addr: &str) -> Result<Option<RouteEntry>, ControlError> {
        self.try_call(&serde_json::json!({"cmd": "route_lookup", "vrf": vrf, "addr": addr}), "route")
    }

    /// `nh_dump`: every nexthop.
    pub fn nh_dump(&self) -> Result<Vec<NexthopEntry>, Failure> {
        self.call(&serde_json::json!({"cmd": "nh_dump"}), "nexthops")
    }

    /// `nh_get` of one nexthop.
    pub fn try_nh_get(&self, id: u32) -> Result<NexthopEntry, ControlError> {
        self.try_call(&serde_json::json!({"cmd": "nh_get", "id": id}), "nexthop")
    }

    /// `label_dump`: every MPLS label.
    pub fn label_dump(&self) -> Result<Vec<LabelEntry>, Failure> {
        self.call(&serde_json::json!({"cmd": "label_dump"}), "labels")
    }

    /// `label_get` of one label.
    pub fn label_get(&self, label: u32) -> Result<LabelEntry, Failure> {
        self.call(&serde_json::json!({"cmd": "label_get", "label": label}), "label")
    }

    /// `vif_dump`: every vif as the agent holds it.
    pub fn vif_dump(&self) -> Result<Vec<VifEntry>, Failure> {
        self.call(&serde_json::json!({"cmd": "vif_dump"}), "vifs")
    }

    /// `info`.
    pub fn try_info(&self) -> Result<InfoReply, ControlError> {
        self.try_call(&serde_json::json!({"cmd": "info"}), "info")
    }

    /// `status`: the agent's counters and flow setup latency.
    pub fn try_status(&self) -> Result<AgentStatus, ControlError> {
        let reply = self.try_request(&serde_json::json!({"cmd": "status"}))?;
        serde_json::from_value(reply).map_err(|e| ControlError::Broken(format!("bad status reply: {e}")))
    }
}

/// Decodes one reply line: the object when `"ok"` is true, else the refusal's `error`.
pub fn parse_reply(line: &str) -> Result<Value, ControlError> {
    let reply: Value = serde_json::from_str(line)
        .map_err(|e| ControlError::Broken(format!("bad reply from the vRouter: {e}: {:?}", line.trim_end())))?;
    if reply.get("ok") == Some(&Value::Bool(true)) {
        return Ok(reply);
    }
    let msg = reply.get("error").and_then(Value::as_str).unwrap_or("request failed");
    Err(ControlError::Refused(msg.to_string()))
}

/// The reply's `field`, deserialized (a missing field reads as `null`).
pub fn field_of<T: DeserializeOwned>(reply: &Value, field: &str) -> Result<T, ControlError> {
    let v = reply.get(field).cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| ControlError::Broken(format!("bad reply from the vRouter: {field}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_tool() {
        let e = parse_reply(r#"{"ok":false,"error":"route[0].nexthop: nexthop 99 is not defined"}"#).unwrap_err();
        assert_eq!(e.clone().into_failure("rt").0, "rt: route[0].nexthop: nexthop 99 is not defined");
        assert_eq!(parse_reply(r#"{"ok":false}"#).unwrap_err(), ControlError::Refused("request failed".into()));
        assert!(matches!(parse_reply("nonsense"), Err(ControlError::Broken(_))));
        assert!(parse_reply(r#"{"ok":true,"changed":true}"#).is_ok());
    }

    #[test]
    fn typed_fields() {
        let r = parse_reply(
            r#"{"ok":true,"route":{"vrf":1,"family":"inet","prefix":"10.0.0.0/24","prefix_len":24,
                "nexthop":3,"label":null,"stitched_mac":null}}"#,
        )
        .unwrap();
        let route: Option<RouteEntry> = field_of(&r, "route").unwrap();
        assert_eq!(route.unwrap().nexthop, 3);
        let none: Option<RouteEntry> = field_of(&parse_reply(r#"{"ok":true,"route":null}"#).unwrap(), "route").unwrap();
        assert!(none.is_none());
        let bad: Result<Vec<RouteEntry>, _> = field_of(&r, "routes");
        assert!(matches!(bad, Err(ControlError::Broken(_))));
    }

    #[test]
    fn unreachable_socket() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::new(dir.path(), "rt");
        let e = c.try_info().unwrap_err();
        assert!(matches!(e, ControlError::Unreachable(ref m) if m.starts_with("vRouter is not running")), "{e:?}");
    }
}
