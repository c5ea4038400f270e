//! A small HTTP/1.1 client on `std::net::TcpStream`: keep-alive connections with a
//! buffer (so pipelined responses can be read one after another), a raw mode for
//! malformed requests, and waits for the server to close a connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Whether the server said it will close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .map(|v| v.eq_ignore_ascii_case("close"))
            .unwrap_or(false)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An HTTP/1.1 connection (keep-alive) with a buffer, so pipelined responses can be read
/// one after another.
pub struct HttpConn {
    pub stream: TcpStream,
    addr: String,
    buf: Vec<u8>,
    closed_by_server: bool,
}

impl HttpConn {
    pub fn connect(addr: &str) -> HttpConn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        HttpConn {
            stream,
            addr: addr.to_string(),
            buf: Vec::new(),
            closed_by_server: false,
        }
    }

    fn try_connect(addr: &str, timeout: Duration) -> io::Result<HttpConn> {
        let sa: SocketAddr = addr.parse().unwrap();
        let stream = TcpStream::connect_timeout(&sa, timeout)?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream,
            addr: addr.to_string(),
            buf: Vec::new(),
            closed_by_server: false,
        })
    }

    /// Writes raw bytes; panics on error.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.addr));
    }

    /// Writes raw bytes.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The bytes of a request (Host and, for a body or POST, Content-Length added).
    pub fn format_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Sends one request and reads its response (reconnects first if the previous
    /// response announced `Connection: close`).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        if self.closed_by_server {
            *self = HttpConn::connect(&self.addr.clone());
        }
        let bytes = self.format_request(method, path, headers, body);
        self.send_raw(&bytes);
        let resp = self
            .read_response(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if resp.closes() {
            self.closed_by_server = true;
        }
        resp
    }

    /// POST an API request; (status, JSON body).
    pub fn api(&mut self, path: &str, system_id: Option<&str>, body: &str) -> (u16, Value) {
        let headers: Vec<(&str, &str)> = system_id.map(|s| ("SystemId", s)).into_iter().collect();
        let resp = self.request("POST", path, &headers, body.as_bytes());
        let v = resp.json();
        (resp.status, v)
    }

    /// Reads more bytes into the buffer; Ok(0) on EOF.
    fn fill(&mut self, deadline: Instant) -> Result<usize, String> {
        let now = Instant::now();
        if now >= deadline {
            return Err("timed out".into());
        }
        self.stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        let mut tmp = [0u8; 16 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err("timed out".into())
            }
            Err(e) => Err(format!("read error: {e}")),
        }
    }

    /// Reads one response (Content-Length, chunked, or until EOF).
    pub fn read_response(&mut self, timeout: Duration) -> Result<HttpResponse, String> {
        let deadline = Instant::now() + timeout;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.fill(deadline)? == 0 {
                return Err(format!(
                    "connection closed before a complete response head (got {:?})",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(format!("bad status line {status_line:?}"));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let body_start = head_end + 4;
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let chunked = get("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        let body;
        if chunked {
            loop {
                if let Some((b, used)) = decode_chunked(&self.buf[body_start..]) {
                    body = b;
                    self.buf.drain(..body_start + used);
                    break;
                }
                if self.fill(deadline)? == 0 {
                    return Err("connection closed inside a chunked body".into());
                }
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| format!("bad Content-Length {len:?}"))?;
            while self.buf.len() < body_start + len {
                if self.fill(deadline)? == 0 {
                    return Err("connection closed inside the body".into());
                }
            }
            body = self.buf[body_start..body_start + len].to_vec();
            self.buf.drain(..body_start + len);
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            body = Vec::new();
            self.buf.drain(..body_start);
        } else {
            // No length: the body runs to the end of the connection.
            loop {
                match self.fill(deadline) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.starts_with("read error") => break,
                    Err(e) => return Err(e),
                }
            }
            body = self.buf[body_start..].to_vec();
            self.buf.clear();
            self.closed_by_server = true;
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// True when the server closes the connection (EOF or reset) within `timeout`; any
    /// bytes arriving meanwhile are discarded.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        self.buf.clear();
        wait_eof(&mut self.stream, timeout).is_some()
    }
}

fn decode_chunked(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let line_end = pos + find(&data[pos..], b"\r\n")?;
        let size_str = String::from_utf8_lossy(&data[pos..line_end]);
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Skip trailers up to the empty line.
            loop {
                let e = pos + find(&data[pos..], b"\r\n")?;
                let empty = e == pos;
                pos = e + 2;
                if empty {
                    return Some((body, pos));
                }
            }
        }
        if data.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

/// GET `path` on a fresh connection with short timeouts; Err on any failure.
pub fn try_get(addr: &str, path: &str, timeout: Duration) -> Result<HttpResponse, String> {
    let mut c = HttpConn::try_connect(addr, timeout).map_err(|e| e.to_string())?;
    let bytes = c.format_request("GET", path, &[], b"");
    c.try_send_raw(&bytes).map_err(|e| e.to_string())?;
    c.read_response(timeout)
}

/// Reads and discards until EOF or a connection error; the time it took, or None if the
/// connection was still open after `timeout`.
pub fn wait_eof(stream: &mut TcpStream, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut tmp = [0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut tmp) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
}
