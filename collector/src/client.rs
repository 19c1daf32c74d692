//! A blocking HTTP/1.1 client for the REST API (`ureq`, plain HTTP): an optional bearer
//! token and JSON body. For scripts, examples and tests that talk to the collector (or to the
//! vRouter agent's REST port) without an async runtime.

use std::io::{Error, ErrorKind};
use std::time::Duration;

/// Sends `method path` to `addr` (`host:port`) and returns the status code and the body
/// text, whatever the status. `token` becomes `Authorization: Bearer`; a `body` is sent as
/// JSON.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let invalid = |e: &dyn std::fmt::Display| Error::new(ErrorKind::InvalidInput, format!("{method} {path}: {e}"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // A 4xx or 5xx is an answer like any other: the caller looks at the status.
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req =
        ureq::http::Request::builder().method(method).uri(format!("http://{addr}{path}")).header("Connection", "close");
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req = req.header("Content-Type", "application/json");
    }
    let req = req.body(body).map_err(|e| invalid(&e))?;
    let resp = agent.run(req).map_err(into_io)?;
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().map_err(into_io)?;
    Ok((status, text))
}

fn into_io(e: ureq::Error) -> Error {
    match e {
        ureq::Error::Io(e) => e,
        e => Error::new(ErrorKind::InvalidData, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// Serves one connection with `response` (after reading the request head) and returns
    /// the request head it read.
    fn serve_once(response: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(&s);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            (&s).write_all(&response).unwrap();
            head
        });
        (addr, h)
    }

    #[test]
    fn plain_body_status_and_token() {
        let (addr, h) =
            serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec());
        assert_eq!(request(&addr, "GET", "/x?y=1", Some("tok"), None).unwrap(), (404, "{}".into()));
        let head = h.join().unwrap();
        assert!(head.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains("authorization: bearer tok\r\n"), "{head}");
    }

    /// A multi-byte character cut in two by a chunk boundary: the hand-written decoder this
    /// client replaced sliced each chunk as a `str` and refused the response.
    #[test]
    fn chunk_boundary_inside_a_utf8_character() {
        let body = "{\"name\":\"vn-é€😀\"}";
        let b = body.as_bytes();
        // Cut inside "é" (2 bytes), "€" (3 bytes) and "😀" (4 bytes).
        let e = body.find('é').unwrap() + 1;
        let euro = body.find('€').unwrap() + 2;
        let smile = body.find('😀').unwrap() + 3;
        let mut resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for part in [&b[..e], &b[e..euro], &b[euro..smile], &b[smile..]] {
            assert!(std::str::from_utf8(part).is_err(), "each chunk ends or starts inside a character");
            resp.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            resp.extend_from_slice(part);
            resp.extend_from_slice(b"\r\n");
        }
        resp.extend_from_slice(b"0\r\n\r\n");
        let (addr, h) = serve_once(resp);
        assert_eq!(request(&addr, "POST", "/q", None, Some("{}")).unwrap(), (200, body.to_string()));
        assert!(h.join().unwrap().to_ascii_lowercase().contains("content-type: application/json"));
    }

    #[test]
    fn garbage_is_an_error() {
        let (addr, h) = serve_once(b"garbage\r\n\r\n".to_vec());
        assert!(request(&addr, "GET", "/", None, None).is_err());
        h.join().unwrap();
        let (addr, h) = serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec());
        assert!(request(&addr, "GET", "/", None, None).is_err());
        h.join().unwrap();
    }
}
