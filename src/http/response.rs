//! Encoding of HTTP/1.1 responses into a write buffer.
//!
//! The encoders append to a caller-owned `BytesMut` instead of returning new
//! buffers, so a connection can batch the answers to pipelined requests and
//! flush them with one write, with no intermediate allocation. Responses carry
//! only what clients need (status, `Content-Type`, `Content-Length`,
//! `Connection`) to keep the hot push path small.
//!
//! Header values come from the server itself, never from a client, but CR and
//! LF are still replaced by spaces so that no value can inject a header.

use bytes::BytesMut;

/// Content type of the JSON API.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The reason phrase for `status`; empty (which HTTP allows) when unknown.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Appends a status line and the headers of a response whose body (of
/// `content_length` bytes) the caller appends next.
///
/// `Connection: close` is sent when `!keep_alive`; `Connection: keep-alive`
/// only for HTTP/1.0 clients, for which persistence is not the default.
pub fn write_head(
    out: &mut BytesMut,
    status: u16,
    content_type: &str,
    content_length: usize,
    keep_alive: bool,
    http10: bool,
) {
    head_with(
        out,
        status,
        content_type,
        &[],
        content_length,
        (keep_alive, http10),
    );
}

/// A script any origin may import (`/shardcast.js`, an ES module: browsers
/// load modules of another origin only with this CORS header).
pub fn write_public_script(out: &mut BytesMut, body: &[u8], keep_alive: bool, http10: bool) {
    let cors: &[(&str, &[u8])] = &[("Access-Control-Allow-Origin", b"*")];
    let content_type = "text/javascript; charset=utf-8";
    head_with(
        out,
        200,
        content_type,
        cors,
        body.len(),
        (keep_alive, http10),
    );
    out.extend_from_slice(body);
}

fn head_with(
    out: &mut BytesMut,
    status: u16,
    content_type: &str,
    extra: &[(&str, &[u8])],
    content_length: usize,
    (keep_alive, http10): (bool, bool),
) {
    put_status_line(out, status);
    put_header(out, "Content-Type", content_type.as_bytes());
    for (name, value) in extra {
        put_header(out, name, value);
    }
    put_header(
        out,
        "Content-Length",
        Decimal::new(content_length).as_bytes(),
    );
    match (keep_alive, http10) {
        (false, _) => put_header(out, "Connection", b"close"),
        (true, true) => put_header(out, "Connection", b"keep-alive"),
        (true, false) => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a full response: head (see [`write_head`]) then body.
pub fn write_response(
    out: &mut BytesMut,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    http10: bool,
) {
    write_head(out, status, content_type, body.len(), keep_alive, http10);
    out.extend_from_slice(body);
}

/// [`write_response`] with content type `application/json; charset=utf-8`.
pub fn write_json(out: &mut BytesMut, status: u16, body: &[u8], keep_alive: bool, http10: bool) {
    write_response(out, status, JSON_CONTENT_TYPE, body, keep_alive, http10);
}

/// The 101 Switching Protocols answer for a WebSocket upgrade, given the
/// ready `Sec-WebSocket-Accept` value (`tungstenite::handshake::derive_accept_key`)
/// and the extensions agreed, if any (`Sec-WebSocket-Extensions`).
pub fn write_switching_protocols(out: &mut BytesMut, accept_key: &str, extensions: Option<&str>) {
    put_status_line(out, 101);
    put_header(out, "Upgrade", b"websocket");
    put_header(out, "Connection", b"Upgrade");
    put_header(out, "Sec-WebSocket-Accept", accept_key.as_bytes());
    if let Some(extensions) = extensions {
        put_header(out, "Sec-WebSocket-Extensions", extensions.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn put_status_line(out: &mut BytesMut, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(Decimal::new(usize::from(status)).as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn put_header(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend(value.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        _ => b,
    }));
    out.extend_from_slice(b"\r\n");
}

/// Formats a number on the stack, avoiding a `String` per response.
struct Decimal {
    digits: [u8; Self::MAX_DIGITS],
    start: usize,
}

impl Decimal {
    const MAX_DIGITS: usize = usize::MAX.ilog10() as usize + 1;

    fn new(mut value: usize) -> Self {
        let mut digits = [b'0'; Self::MAX_DIGITS];
        let mut start = Self::MAX_DIGITS;
        for slot in digits.iter_mut().rev() {
            // `value % 10` is below 10, so the cast cannot truncate.
            *slot = b'0' + (value % 10) as u8;
            start -= 1;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Self { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(write: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        write(&mut out);
        String::from_utf8(out.to_vec()).expect("responses are ASCII")
    }

    #[test]
    fn response_keep_alive_http11() {
        let text = encoded(|out| write_response(out, 404, "text/plain", b"nope", true, false));
        assert_eq!(
            text,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope"
        );
    }

    #[test]
    fn response_close() {
        let text = encoded(|out| write_response(out, 413, "text/plain", b"", false, false));
        assert_eq!(
            text,
            "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn json_keep_alive_http10() {
        let text = encoded(|out| write_json(out, 200, br#"{"code":0}"#, true, true));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: 10\r\nConnection: keep-alive\r\n\r\n{\"code\":0}"
        );
    }

    #[test]
    fn switching_protocols() {
        let key = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let text = encoded(|out| write_switching_protocols(out, key, None));
        assert_eq!(
            text,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        let text = encoded(|out| write_switching_protocols(out, key, Some("permessage-deflate")));
        assert!(text.ends_with(
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ));
    }

    #[test]
    fn encoders_append() {
        let text = encoded(|out| {
            out.extend_from_slice(b"prefix|");
            write_head(out, 204, "text/plain", 0, true, false);
        });
        assert_eq!(
            text,
            "prefix|HTTP/1.1 204 No Content\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn unknown_status_has_empty_reason() {
        let text = encoded(|out| write_head(out, 599, "text/plain", 0, true, false));
        assert!(text.starts_with("HTTP/1.1 599 \r\n"));
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let text = encoded(|out| write_switching_protocols(out, "a\r\nX-Evil: 1", None));
        assert!(text.contains("Sec-WebSocket-Accept: a  X-Evil: 1\r\n"));
    }

    #[test]
    fn decimal_formats_edge_values() {
        for value in [0, 7, 10, 1234567, usize::MAX] {
            assert_eq!(Decimal::new(value).as_bytes(), value.to_string().as_bytes());
        }
    }
}
