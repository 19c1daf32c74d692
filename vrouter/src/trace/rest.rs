//! The trace REST API on the agent's HTTP port (`[vrouter] trace_api`): the flow tracing
//! API's resource, `/traces`, over HTTP/1.1 with JSON bodies, one request per connection.
//!
//! | method and path | does | answers |
//! | --- | --- | --- |
//! | `POST /traces` | creates a request (`condition`, `scope`, `limit`, `enabled`; disabled unless `enabled`) | 201 and the request (its `id`) |
//! | `GET /traces` | the caller's requests | 200 and a list |
//! | `GET /traces/<id>` | one request | 200, or 404 |
//! | `PUT /traces/<id>` | `{"enabled": bool}` (other fields, when given, must equal the stored ones) | 200 and the request |
//! | `DELETE /traces/<id>` | removes it | 200 and the removed request |
//! | `GET /traces/<id>/records` | the traces recorded for the request, read from the trace region | 200 and a list, or 404 |
//!
//! The flow tracing API seed stops at the requests ("collection and display of the flow
//! trace log messages themselves ... reserved for future work"); the records are a
//! sub-resource of the request that produced them, so the same token check and the same 404
//! for another tenant's request id apply. Each element of the list is one trace as
//! `trace get --json` shows it (`trace_id`, `request`, `flow`, `disposition`, `trace`:
//! packets with their steps); a trace continued here from another vRouter has no `request`
//! and a `continued_from` (see [`super::control`] for which requests it is shown under).
//!
//! Every call needs `Authorization: Bearer <tenant token>` (401 otherwise): the network API
//! is for tenants; the operator uses the owner-only control socket. Errors are
//! `{"error": "<field>: <message>", "field": "<field>"}` with 400 (bad request), 401, 404.

use super::control::TraceControl;
use super::region::RegionInfo;
use super::view;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// A bound REST listener.
pub struct RestServer {
    listener: TcpListener,
    ctl: Arc<TraceControl>,
}

impl RestServer {
    pub fn bind(addr: SocketAddr, ctl: Arc<TraceControl>) -> std::io::Result<RestServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(RestServer { listener, ctl })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until `stop` is set.
    pub fn run(self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((s, _)) => {
                    let _ = self.serve(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn serve(&self, s: TcpStream) -> std::io::Result<()> {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let (status, body) = match read_request(&s) {
            Ok(req) => handle(&self.ctl, &req),
            Err(msg) => (400, json!({"error": msg, "field": "request"})),
        };
        let text = body.to_string();
        let reason = match status {
            200 => "OK",
            201 => "Created",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            500 => "Internal Server Error",
            _ => "Error",
        };
        let mut w = &s;
        write!(
            w,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )?;
        w.flush()
    }
}

/// A parsed HTTP request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub token: Option<String>,
    pub body: Vec<u8>,
}

fn read_request(s: &TcpStream) -> Result<Request, String> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("reading the request: {e}"))?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err("request: not an HTTP request line".into());
    };
    let mut req = Request { method: method.to_string(), path: path.to_string(), ..Default::default() };
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).map_err(|e| format!("reading the headers: {e}"))?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else { continue };
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().map_err(|_| "Content-Length: not a number".to_string())?,
            "authorization" => {
                req.token = v.trim().strip_prefix("Bearer ").map(|t| t.trim().to_string());
            }
            _ => {}
        }
    }
    if len > MAX_BODY {
        return Err(format!("Content-Length: {len} bytes is over the limit of {MAX_BODY}"));
    }
    req.body = vec![0; len];
    r.read_exact(&mut req.body).map_err(|e| format!("reading the body: {e}"))?;
    Ok(req)
}

/// Maps an HTTP request to a trace command and its answer to a status.
pub fn handle(ctl: &TraceControl, req: &Request) -> (u16, Value) {
    let Some(token) = &req.token else {
        return (
            401,
            json!({"error": "token: an Authorization: Bearer <tenant token> header is required", "field": "token"}),
        );
    };
    let body: Value = if req.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return (400, json!({"error": format!("body: not JSON: {e}"), "field": "body"})),
        }
    };
    let path = req.path.trim_end_matches('/');
    if let Some(i) = path
        .strip_prefix("/traces/")
        .and_then(|p| p.strip_suffix("/records"))
        .filter(|i| !i.is_empty() && !i.contains('/'))
    {
        if req.method != "GET" {
            return (
                405,
                json!({"error": format!("method: {} is not allowed on {}", req.method, req.path), "field": "method"}),
            );
        }
        return records(ctl, token, i);
    }
    let id = path.strip_prefix("/traces/").filter(|i| !i.is_empty() && !i.contains('/'));
    let mut cmd = match (req.method.as_str(), path, id) {
        ("POST", "/traces", _) => {
            let mut c = if body.is_object() { body.clone() } else { json!({}) };
            if !body.is_null() && !body.is_object() {
                return (400, json!({"error": "body: must be a JSON object", "field": "body"}));
            }
            c["cmd"] = "trace_add".into();
            c
        }
        ("GET", "/traces", _) => json!({"cmd": "trace_show"}),
        ("GET", _, Some(i)) => json!({"cmd": "trace_get", "id": i}),
        ("DELETE", _, Some(i)) => json!({"cmd": "trace_remove", "id": i}),
        ("PUT", _, Some(i)) => {
            let Some(en) = body.get("enabled").and_then(Value::as_bool) else {
                return (400, json!({"error": "enabled: must be true or false", "field": "enabled"}));
            };
            // The other fields, when given, must be those of the stored request.
            let cur = ctl.command(&json!({"cmd": "trace_get", "id": i, "token": token}));
            if cur["ok"] != true {
                return status_of(cur);
            }
            for f in ["condition", "scope", "limit"] {
                if let Some(v) = body.get(f) {
                    if *v != cur["request"][f] {
                        return (
                            400,
                            json!({"error": format!("{f}: must match the existing request (only enabled can change)"), "field": f}),
                        );
                    }
                }
            }
            json!({"cmd": if en { "trace_enable" } else { "trace_disable" }, "id": i})
        }
        (_, "/traces", _) | (_, _, Some(_)) => {
            return (
                405,
                json!({"error": format!("method: {} is not allowed on {}", req.method, req.path), "field": "method"}),
            )
        }
        _ => return (404, json!({"error": format!("path: no resource {}", req.path), "field": "path"})),
    };
    cmd["token"] = Value::from(token.clone());
    let created = req.method == "POST";
    let r = ctl.command(&cmd);
    if r["ok"] != true {
        return status_of(r);
    }
    let out = if r.get("requests").is_some() { r["requests"].clone() } else { r["request"].clone() };
    (if created { 201 } else { 200 }, out)
}

/// `GET /traces/<id>/records`: the caller's request's traces, each with its steps.
fn records(ctl: &TraceControl, token: &str, id: &str) -> (u16, Value) {
    let r = ctl.command(&json!({"cmd": "trace_records", "id": id, "token": token}));
    if r["ok"] != true {
        return status_of(r);
    }
    let info: RegionInfo = match serde_json::from_value(r["region"].clone()) {
        Ok(i) => i,
        Err(e) => return (500, json!({"error": format!("region: {e}"), "field": "region"})),
    };
    let recs: Vec<_> =
        r["records"].as_array().map_or(&[][..], Vec::as_slice).iter().filter_map(view::record_from_json).collect();
    let traces: Vec<Value> = view::collect(&recs).iter().map(|t| view::trace_json(t, &info, true)).collect();
    (200, Value::from(traces))
}

fn status_of(r: Value) -> (u16, Value) {
    let field = r["field"].as_str().unwrap_or("");
    let msg = r["error"].as_str().unwrap_or("");
    let status = match field {
        "token" => 401,
        // The trace region could not be read: the server's problem, not the request's.
        "region" => 500,
        "id" if msg.contains("no trace request") => 404,
        _ => 400,
    };
    (status, json!({"error": msg, "field": field}))
}
