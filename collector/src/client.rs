//! A minimal blocking HTTP/1.1 client for the REST API: one request per connection
//! (`Connection: close`), an optional bearer token and JSON body, chunked responses
//! decoded. For scripts, examples and tests that talk to the collector (or to the vRouter
//! agent's REST port) without an async runtime.

use std::io::{Error, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `method path` to `addr` (`host:port`) and returns the status code and the body
/// text. `token` becomes `Authorization: Bearer`; a `body` is sent as JSON.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    let ctype = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let resp = String::from_utf8(resp).map_err(|e| Error::new(ErrorKind::InvalidData, e))?;
    parse_response(&resp)
}

fn bad(what: &str) -> Error {
    Error::new(ErrorKind::InvalidData, what.to_owned())
}

/// Status and body of a whole HTTP/1.1 response.
fn parse_response(resp: &str) -> std::io::Result<(u16, String)> {
    let (head, rest) = resp.split_once("\r\n\r\n").ok_or_else(|| bad("no end of the response head"))?;
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| bad("no status code"))?;
    let text =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest)? } else { rest.to_owned() };
    Ok((status, text))
}

/// Undoes chunked transfer encoding.
fn dechunk(mut s: &str) -> std::io::Result<String> {
    let mut out = String::new();
    loop {
        let (len, rest) = s.split_once("\r\n").ok_or_else(|| bad("chunk size line"))?;
        let n = usize::from_str_radix(len.trim(), 16).map_err(|_| bad("chunk size"))?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).ok_or_else(|| bad("short chunk"))?);
        s = rest.get(n + 2..).ok_or_else(|| bad("chunk end"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        assert_eq!(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap(), (200, "{}".into()));
        let chunked =
            "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, "{\"a\":1}".into()));
        assert!(parse_response("garbage").is_err());
        assert!(parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }
}
