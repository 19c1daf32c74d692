//! The trace REST API on the agent's HTTP port (`[vrouter] trace_api`): the flow tracing
//! API's resource, `/traces`, over HTTP/1.1 with JSON bodies (axum; connections are served concurrently).
//!
//! | method and path | does | answers |
//! | --- | --- | --- |
//! | `POST /traces` | creates a request (`condition`, `scope`, `limit`, `enabled`; disabled unless `enabled`) | 201 and the request (its `id`) |
//! | `GET /traces` | the caller's requests | 200 and a list |
//! | `GET /traces/<id>` | one request | 200, or 404 |
//! | `PUT /traces/<id>` | `{"enabled": bool}` (other fields, when given, must equal the stored ones) | 200 and the request |
//! | `DELETE /traces/<id>` | removes it | 200 and the removed request |
//! | `GET /traces/<id>/records` | the traces recorded for the request, read from the trace region | 200 and a list, or 404 |
//! | `POST /traces/simulate` | simulates a packet (the fields of `trace_simulate`: `vif`, `dst_ip`, ...) on one of the tenant's vifs; answered by the agent over the control socket ([`RestServer::with_simulator`]) | 200 and the simulation (`verdict`, `steps`, `policy`), 400 naming a bad field |
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
use crate::control::protocol::{TraceCommand, TraceId};
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// How long a stop waits for the requests being answered before it drops their connections.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A bound REST listener. [`RestServer::run`] serves it on a tokio runtime of its own (one
/// task per connection, so a slow client holds only its own connection); each request is
/// answered on the runtime's blocking pool, since trace commands take a lock, write the
/// requests file and read the trace region.
pub struct RestServer {
    listener: std::net::TcpListener,
    ctl: Arc<TraceControl>,
    /// The programming API (`POST /api/v1/control`) and the controller's token.
    control: Option<(Arc<std::sync::Mutex<crate::control::program::Programmer>>, Arc<str>)>,
    sim: Option<Simulator>,
}

/// Answers a `trace_simulate` command (the agent owns the policy engine and the flow
/// table: see [`control_socket`]).
pub type Simulator = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A [`Simulator`] that asks the agent over its control socket at `path`.
pub fn control_socket(path: std::path::PathBuf) -> Simulator {
    Arc::new(move |cmd: &Value| {
        use std::io::{BufRead, BufReader, Write};
        let ask = || -> std::io::Result<Value> {
            let mut s = std::os::unix::net::UnixStream::connect(&path)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            writeln!(s, "{cmd}")?;
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line)?;
            serde_json::from_str(&line).map_err(std::io::Error::other)
        };
        ask().unwrap_or_else(|e| json!({"ok": false, "error": format!("agent: {e}"), "field": "agent"}))
    })
}

impl RestServer {
    /// Binds `addr` (before anything else starts: an address in use is an error here).
    pub fn bind(addr: SocketAddr, ctl: Arc<TraceControl>) -> std::io::Result<RestServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(RestServer { listener, ctl, control: None, sim: None })
    }

    /// Serves `POST /traces/simulate` with `sim`.
    pub fn with_simulator(mut self, sim: Simulator) -> RestServer {
        self.sim = Some(sim);
        self
    }

    /// Serves the programming API at `POST /api/v1/control` for callers presenting `token`
    /// (the body and the reply are those of the control socket; see
    /// `vrouter_abi::control`).
    pub fn with_control(
        mut self,
        programmer: Arc<std::sync::Mutex<crate::control::program::Programmer>>,
        token: &str,
    ) -> RestServer {
        self.control = Some((programmer, Arc::from(token)));
        self
    }

    /// The bound address (the port chosen for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections on the calling thread until `stop` is set; then stops accepting,
    /// gives the requests being answered a moment to finish, and shuts its runtime down.
    pub fn run(self, stop: Arc<AtomicBool>) -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .thread_name("vr-trace-api")
            .max_blocking_threads(4)
            .build()?;
        let (ctl, sim) = (self.ctl, self.sim);
        let control = self.control;
        let app = Router::new()
            .route(
                "/api/v1/control",
                axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                    let control = control.clone();
                    async move { serve_control(control, headers, body).await }
                }),
            )
            .fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Body| {
                serve(ctl.clone(), sim.clone(), method, uri, headers, body)
            });
        let stopped = move || {
            let stop = stop.clone();
            async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let result = rt.block_on(async {
            let listener = tokio::net::TcpListener::from_std(self.listener)?;
            let server = tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(stopped()).into_future());
            stopped().await;
            // Graceful: no new connections, the answers under way are finished; a client that
            // keeps a connection open without finishing its request does not hold the stop.
            match tokio::time::timeout(STOP_GRACE, server).await {
                Ok(Ok(r)) => r,
                Ok(Err(join)) => Err(std::io::Error::other(join)),
                Err(_) => Ok(()),
            }
        });
        rt.shutdown_timeout(STOP_GRACE);
        result
    }

    /// Serves on a thread of its own until the returned handle is stopped or dropped.
    pub fn start(self) -> std::io::Result<RunningRest> {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new().name("vr-trace-api".into()).spawn(move || self.run(st))?;
        Ok(RunningRest { stop, thread: Some(thread) })
    }
}

/// `POST /api/v1/control`: the controller's programming requests (401 without the token,
/// 404 when the API is not enabled); the request runs on a blocking thread (it may wait for
/// the lcores to take a new state).
async fn serve_control(
    control: Option<(Arc<std::sync::Mutex<crate::control::program::Programmer>>, Arc<str>)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let answer = |code: StatusCode, v: Value| {
        (code, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
    };
    let Some((programmer, token)) = control else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"ok": false, "error": "the programming API is not enabled (vrouter.control_token_file)"}),
        );
    };
    let presented =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compared in constant time: the token is a secret.
    let good = presented.is_some_and(|p| {
        p.len() == token.len() && p.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if !good {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"ok": false, "error": "authorization: a valid bearer token is needed"}),
        );
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return answer(StatusCode::BAD_REQUEST, json!({"ok": false, "error": format!("request: {e}")})),
    };
    let reply =
        tokio::task::spawn_blocking(move || programmer.lock().unwrap_or_else(|e| e.into_inner()).serve(&request)).await;
    match reply {
        Ok(r) if r["ok"] == true => answer(StatusCode::OK, r),
        Ok(r) => answer(StatusCode::BAD_REQUEST, r),
        Err(_) => answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"ok": false, "error": "the request failed"})),
    }
}

/// A REST server running on its own thread ([`RestServer::start`]); dropping it stops it.
pub struct RunningRest {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningRest {
    /// Stops the server and waits for its thread; the error of the server, if it failed.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> std::io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the trace API thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for RunningRest {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// One HTTP request: read (with its size limit), mapped by [`handle`] on the blocking pool.
async fn serve(
    ctl: Arc<TraceControl>,
    sim: Option<Simulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (status, value) = match read_request(method, uri, &headers, body).await {
        Ok(req) => match tokio::task::spawn_blocking(move || handle_with(&ctl, sim.as_ref(), &req)).await {
            Ok(r) => r,
            Err(e) => (500, json!({"error": format!("request: handler failed: {e}"), "field": "request"})),
        },
        Err(msg) => (400, json!({"error": msg, "field": "request"})),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

async fn read_request(method: Method, uri: Uri, headers: &HeaderMap, body: Body) -> Result<Request, String> {
    let len = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()),
        None => Some(0),
    };
    if let Some(len) = len.filter(|l| *l > MAX_BODY) {
        return Err(format!("Content-Length: {len} bytes is over the limit of {MAX_BODY}"));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| format!("reading the body: {e}"))?;
    let path = uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
    Ok(Request { method: method.as_str().to_string(), path, token, body: body.to_vec() })
}

/// A parsed HTTP request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path and query, e.g. `/traces/<id>/records`.
    pub path: String,
    /// Bearer token from the `Authorization` header, if any.
    pub token: Option<String>,
    /// The body (at most 64 KiB).
    pub body: Vec<u8>,
}

/// Maps an HTTP request to a trace command and its answer to a status (no simulator).
pub fn handle(ctl: &TraceControl, req: &Request) -> (u16, Value) {
    handle_with(ctl, None, req)
}

/// [`handle`], with `sim` answering `POST /traces/simulate`.
pub fn handle_with(ctl: &TraceControl, sim: Option<&Simulator>, req: &Request) -> (u16, Value) {
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
    if path == "/traces/simulate" {
        if req.method != "POST" {
            return (
                405,
                json!({"error": format!("method: {} is not allowed on {}", req.method, req.path), "field": "method"}),
            );
        }
        let Some(sim) = sim else {
            return (404, json!({"error": "path: simulation is not served here", "field": "path"}));
        };
        if !body.is_object() {
            return (400, json!({"error": "body: must be a JSON object", "field": "body"}));
        }
        // The body has the fields of `trace_simulate`; the agent checks the token (a
        // tenant simulates on its own vifs only) and each field.
        let mut c = body;
        c["cmd"] = "trace_simulate".into();
        c["token"] = Value::from(token.clone());
        let r = sim(&c);
        if r["ok"] != true {
            return status_of(r);
        }
        let mut r = r;
        if let Some(o) = r.as_object_mut() {
            o.remove("ok");
        }
        return (200, r);
    }
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
    let by_id = |i: &str| TraceId { id: Some(i.to_string()) };
    let cmd = match (req.method.as_str(), path, id) {
        ("POST", "/traces", _) => {
            if !body.is_null() && !body.is_object() {
                return (400, json!({"error": "body: must be a JSON object", "field": "body"}));
            }
            // The body has the fields of `trace_add`; the caller is checked before them.
            let mut c = if body.is_object() { body } else { json!({}) };
            c["cmd"] = "trace_add".into();
            c["token"] = Value::from(token.clone());
            return answer(ctl.command(&c), 201);
        }
        ("GET", "/traces", _) => TraceCommand::TraceShow,
        ("GET", _, Some(i)) => TraceCommand::TraceGet(by_id(i)),
        ("DELETE", _, Some(i)) => TraceCommand::TraceRemove(by_id(i)),
        ("PUT", _, Some(i)) => {
            let Some(en) = body.get("enabled").and_then(Value::as_bool) else {
                return (400, json!({"error": "enabled: must be true or false", "field": "enabled"}));
            };
            // The other fields, when given, must be those of the stored request.
            let cur = ctl.execute(Some(token), &TraceCommand::TraceGet(by_id(i)));
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
            if en {
                TraceCommand::TraceEnable(by_id(i))
            } else {
                TraceCommand::TraceDisable(by_id(i))
            }
        }
        (_, "/traces", _) | (_, _, Some(_)) => {
            return (
                405,
                json!({"error": format!("method: {} is not allowed on {}", req.method, req.path), "field": "method"}),
            )
        }
        _ => return (404, json!({"error": format!("path: no resource {}", req.path), "field": "path"})),
    };
    answer(ctl.execute(Some(token), &cmd), 200)
}

/// The status and body of a command's reply: its request(s) with `ok_status`, or the error.
fn answer(r: Value, ok_status: u16) -> (u16, Value) {
    if r["ok"] != true {
        return status_of(r);
    }
    let out = if r.get("requests").is_some() { r["requests"].clone() } else { r["request"].clone() };
    (ok_status, out)
}

/// `GET /traces/<id>/records`: the caller's request's traces, each with its steps.
fn records(ctl: &TraceControl, token: &str, id: &str) -> (u16, Value) {
    let r = ctl.execute(Some(token), &TraceCommand::TraceRecords { id: Some(id.to_string()) });
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
        // The agent did not answer a simulation.
        "agent" => 502,
        "id" if msg.contains("no trace request") => 404,
        _ => 400,
    };
    (status, json!({"error": msg, "field": field}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::Fib;
    use crate::trace::control::Tenant;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    const TOKEN: &str = "red-token-0123456789";

    /// A server on a free port with one tenant (`red`, the demo VNs); its address.
    fn start(dir: &std::path::Path) -> (RunningRest, String) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/demo.toml");
        let text = std::fs::read_to_string(path).expect("demo config");
        let cfg = crate::config::parse(&text, path).expect("demo config parses");
        let fib = Arc::new(Fib::from_config(&cfg).expect("fib"));
        let vns = fib.vif_list().filter_map(|v| v.vn_name.as_deref().map(str::to_string)).collect();
        let tenants = vec![Tenant { name: "red".into(), token: TOKEN.into(), vns }];
        let ctl =
            Arc::new(TraceControl::load(dir, crate::fib::publish::FibCell::fixed(fib)).unwrap().with_tenants(tenants));
        let server = RestServer::bind("127.0.0.1:0".parse().unwrap(), ctl).unwrap();
        let addr = server.local_addr().unwrap().to_string();
        (server.start().unwrap(), addr)
    }

    fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
        let (st, text) = collector::client::request(addr, method, path, token, body).unwrap();
        (st, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
    }

    #[test]
    fn simulate_goes_to_the_simulator_with_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/demo.toml");
        let cfg = crate::config::parse(&std::fs::read_to_string(path).unwrap(), path).unwrap();
        let ctl = TraceControl::load(
            dir.path(),
            crate::fib::publish::FibCell::fixed(Arc::new(Fib::from_config(&cfg).unwrap())),
        )
        .unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Value::Null));
        let s2 = seen.clone();
        let sim: Simulator = Arc::new(move |c: &Value| {
            *s2.lock().unwrap() = c.clone();
            if c["vif"] == 99 {
                json!({"ok": false, "error": "vif: no vif 99", "field": "vif"})
            } else {
                json!({"ok": true, "verdict": "forward on vif0/0", "steps": []})
            }
        });
        let req = |method: &str, body: &str| Request {
            method: method.into(),
            path: "/traces/simulate".into(),
            token: Some(TOKEN.into()),
            body: body.as_bytes().to_vec(),
        };
        let (st, b) = handle_with(&ctl, Some(&sim), &req("POST", r#"{"vif": 1, "dst_ip": "10.1.2.3"}"#));
        assert_eq!((st, b["verdict"].as_str()), (200, Some("forward on vif0/0")), "{b}");
        let c = seen.lock().unwrap().clone();
        assert_eq!(
            (c["cmd"].as_str(), c["token"].as_str(), c["dst_ip"].as_str()),
            (Some("trace_simulate"), Some(TOKEN), Some("10.1.2.3"))
        );
        let (st, b) = handle_with(&ctl, Some(&sim), &req("POST", r#"{"vif": 99}"#));
        assert_eq!((st, b["field"].as_str()), (400, Some("vif")), "{b}");
        assert_eq!(handle_with(&ctl, Some(&sim), &req("GET", "")).0, 405);
        assert_eq!(handle_with(&ctl, None, &req("POST", "{}")).0, 404);
        let mut anon = req("POST", "{}");
        anon.token = None;
        assert_eq!(handle_with(&ctl, Some(&sim), &anon).0, 401);
    }

    #[test]
    fn requests_over_http() {
        let dir = tempfile::tempdir().unwrap();
        let (server, addr) = start(dir.path());
        let (st, b) = http(&addr, "GET", "/traces", None, None);
        assert_eq!((st, b["field"].as_str()), (401, Some("token")), "{b}");
        assert_eq!(b["error"], "token: an Authorization: Bearer <tenant token> header is required");
        let (st, b) = http(&addr, "GET", "/traces", Some("wrong"), None);
        assert_eq!((st, b["field"].as_str()), (401, Some("token")), "{b}");
        let (st, b) =
            http(&addr, "POST", "/traces", Some(TOKEN), Some(r#"{"scope": {"vif": 1}, "limit": {"packets": 4}}"#));
        assert_eq!(st, 201, "{b}");
        assert_eq!((b["project"].as_str(), b["state"].as_str()), (Some("red"), Some("disabled")));
        let path = format!("/traces/{}", b["id"].as_str().unwrap());
        let (st, b) = http(&addr, "PUT", &path, Some(TOKEN), Some(r#"{"enabled": true}"#));
        assert_eq!((st, b["state"].as_str()), (200, Some("enabled")), "{b}");
        let (st, b) = http(&addr, "GET", &format!("{path}/"), Some(TOKEN), None);
        assert_eq!((st, b["enabled"].as_bool()), (200, Some(true)), "{b}");
        assert_eq!(http(&addr, "GET", "/traces", Some(TOKEN), None).1.as_array().unwrap().len(), 1);
        let (st, b) = http(&addr, "GET", "/nothing", Some(TOKEN), None);
        assert_eq!((st, b["error"].as_str()), (404, Some("path: no resource /nothing")), "{b}");
        assert_eq!(http(&addr, "PATCH", "/traces", Some(TOKEN), None).0, 405);
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY));
        let (st, b) = http(&addr, "POST", "/traces", Some(TOKEN), Some(&big));
        assert_eq!((st, b["field"].as_str()), (400, Some("request")), "{b}");
        assert!(b["error"].as_str().unwrap().contains("over the limit of 65536"), "{b}");
        assert_eq!(http(&addr, "DELETE", &path, Some(TOKEN), None).0, 200);
        assert_eq!(http(&addr, "GET", &path, Some(TOKEN), None).0, 404);
        server.stop().unwrap();
        assert!(TcpStream::connect(&addr).is_err(), "stopped: nothing listens any more");
    }

    /// A client that connects and sends nothing, and one that sends half a request, hold
    /// only their own connections: another client is answered at once, and a stop does not
    /// wait for them. (The hand-written server this replaced served one connection at a
    /// time, each with a 5 s read timeout.)
    #[test]
    fn a_slow_client_does_not_block_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (server, addr) = start(dir.path());
        let silent = TcpStream::connect(&addr).unwrap();
        let mut half = TcpStream::connect(&addr).unwrap();
        half.write_all(b"POST /traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer red-tok").unwrap();
        let mut half_body = TcpStream::connect(&addr).unwrap();
        half_body.write_all(b"POST /traces HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"sc").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..3 {
            let t = Instant::now();
            let (st, b) = http(&addr, "GET", "/traces", Some(TOKEN), None);
            assert_eq!((st, b), (200, json!([])));
            assert!(t.elapsed() < Duration::from_secs(1), "answered in {:?}", t.elapsed());
        }
        let t = Instant::now();
        server.stop().unwrap();
        assert!(t.elapsed() < STOP_GRACE * 2 + Duration::from_secs(1), "stopped in {:?}", t.elapsed());
        // The slow connections were closed by the stop, none was answered.
        for mut s in [&silent, &half, &half_body] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            assert!(!String::from_utf8_lossy(&got).contains("200 OK"), "{}", String::from_utf8_lossy(&got));
        }
    }
}
