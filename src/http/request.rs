//! Decoding of HTTP/1.1 requests from the front of a read buffer.
//!
//! The connection loop reads into a buffer and calls [`parse_request`] after
//! every read. The function never mutates the buffer: it answers either
//! [`Parsed::Incomplete`] (read more, then call again) or a complete request
//! together with the number of bytes it occupied, which the caller drains
//! before looking for the next pipelined request. This is the shape of
//! `tokio-util` codecs and mini-redis' `Frame::check`, kept free of any I/O
//! runtime so that every split read and hostile input can be unit-tested.
//!
//! Limits are enforced as early as possible so a client cannot make the server
//! buffer unbounded data: the head is never examined beyond `max_head` bytes,
//! and an oversized `Content-Length` is rejected as soon as the head is
//! complete, before any of the body has arrived.
//!
//! Only `Content-Length` framing is supported. Chunked bodies are rejected
//! rather than half-supported, because a framing disagreement between this
//! server and a proxy in front of it is how requests get smuggled.

use std::borrow::Cow;

use bytes::Bytes;

/// Default cap on the request line plus headers (the 431 threshold).
pub const DEFAULT_MAX_HEAD: usize = 16 * 1024;
/// Default cap on a request body (the 413 threshold).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// More headers than this make the head "too large" (431).
const MAX_HEADERS: usize = 64;

/// Size limits applied while decoding a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes the request line and headers, blank line included, may take.
    pub max_head: usize,
    /// Largest `Content-Length` accepted.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: DEFAULT_MAX_HEAD,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// The request methods the service routes on; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

impl Method {
    /// Methods are case-sensitive (RFC 9110 §9.1), so `get` is `Other`.
    fn from_token(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "POST" => Self::Post,
            _ => Self::Other,
        }
    }
}

/// One decoded request, with the headers shardcast cares about resolved.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path part of the request target, without the query.
    pub path: String,
    /// The raw query string after `?`, if any.
    pub query: Option<String>,
    /// The request was HTTP/1.0.
    pub http10: bool,
    /// Resolved persistence: HTTP/1.1 keeps the connection unless
    /// `Connection: close`; HTTP/1.0 closes it unless `Connection: keep-alive`.
    pub keep_alive: bool,
    /// Header `SystemId`, trimmed.
    pub system_id: Option<String>,
    /// Header `Token`, trimmed.
    pub token: Option<String>,
    /// Header `AdminToken`, trimmed.
    pub admin_token: Option<String>,
    /// Present when the request asks to upgrade to WebSocket.
    pub websocket: Option<WsUpgrade>,
    pub body: Bytes,
}

/// The handshake headers of a WebSocket upgrade request; the caller validates them.
#[derive(Debug)]
pub struct WsUpgrade {
    /// `Sec-WebSocket-Key`, trimmed.
    pub key: Option<String>,
    /// `Sec-WebSocket-Version`, trimmed.
    pub version: Option<String>,
    /// Every `Sec-WebSocket-Extensions` line, in order, joined with `, `
    /// (RFC 9110 §5.3: the same list as one line).
    pub extensions: Option<String>,
    /// `User-Agent`, trimmed (the first, if repeated): a few browsers get
    /// no compression (docs/api.md §10).
    pub user_agent: Option<String>,
}

/// Outcome of looking for a request at the start of a buffer.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per request and destructured at once; boxing would allocate per request"
)]
pub enum Parsed {
    /// A whole request; drain `consumed` bytes before parsing the next one.
    Complete { request: Request, consumed: usize },
    /// The buffer holds only a prefix of a request: read more and retry.
    Incomplete,
}

/// Why a request was rejected. After any of these the connection must be
/// closed: the stream position of the next request is unknown.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("request head too large")]
    HeadTooLarge,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl HttpError {
    /// The response status to answer with before closing.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge => 431,
            Self::BodyTooLarge => 413,
            Self::Malformed(_) => 400,
        }
    }
}

/// Looks at the start of `buf` for one complete request.
///
/// Leading empty lines are skipped (RFC 9112 §2.2) and counted in `consumed`.
///
/// # Errors
///
/// [`HttpError::HeadTooLarge`] once the head exceeds `max_head` bytes (even
/// unfinished) or has more than 64 headers; [`HttpError::BodyTooLarge`] as
/// soon as the head announces more than `max_body` bytes;
/// [`HttpError::Malformed`] for anything that is not a request we can frame.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let Some(head_len) = parse_head(&mut head, buf, limits)? else {
        return Ok(Parsed::Incomplete);
    };
    let line = RequestLine::from_head(&head)?;
    let scan = HeaderScan::collect(head.headers)?;
    let body_len = scan.body_len(limits)?;
    let Some(body) = buf.get(head_len..).and_then(|rest| rest.get(..body_len)) else {
        return Ok(Parsed::Incomplete);
    };
    Ok(Parsed::Complete {
        request: scan.into_request(line, Bytes::copy_from_slice(body)),
        consumed: head_len + body_len,
    })
}

/// Parses the head within the first `max_head` bytes only: a head ending later
/// is too large anyway, and the window bounds the work spent re-parsing the
/// head of a slow client after every read. `None` means "need more bytes".
fn parse_head<'b>(
    head: &mut httparse::Request<'_, 'b>,
    buf: &'b [u8],
    limits: &Limits,
) -> Result<Option<usize>, HttpError> {
    let window = buf.get(..limits.max_head).unwrap_or(buf);
    // httparse accepts a bare LF as a line ending (RFC 9112 §2.2 allows a
    // recipient to); we do not: a proxy in front that reads lines otherwise
    // is how a request gets split or smuggled. The bytes before the first
    // bare LF are parsed alone, so that whatever comes first in the stream
    // is what is refused, however the stream was split into reads: an error
    // before it, else the LF itself — unless the head ended before it (then
    // it is in the body).
    let status = match first_bare_lf(window) {
        Some(at) => match head.parse(&window[..at]).map_err(from_httparse)? {
            done @ httparse::Status::Complete(_) => done,
            httparse::Status::Partial => {
                return Err(HttpError::Malformed("line ending without CR"))
            }
        },
        None => head.parse(window).map_err(from_httparse)?,
    };
    match status {
        httparse::Status::Complete(len) => Ok(Some(len)),
        httparse::Status::Partial if buf.len() > limits.max_head => Err(HttpError::HeadTooLarge),
        httparse::Status::Partial => Ok(None),
    }
}

/// Where the first LF not preceded by CR is in `bytes`.
fn first_bare_lf(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .position(|(i, b)| *b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

fn from_httparse(err: httparse::Error) -> HttpError {
    use httparse::Error as E;
    match err {
        E::TooManyHeaders => HttpError::HeadTooLarge,
        E::Version => HttpError::Malformed("unsupported HTTP version"),
        E::HeaderName => HttpError::Malformed("invalid header name"),
        E::HeaderValue => HttpError::Malformed("invalid header value"),
        E::NewLine => HttpError::Malformed("invalid line ending"),
        E::Token | E::Status => HttpError::Malformed("invalid request line"),
    }
}

/// The request line, borrowed from the buffer.
struct RequestLine<'b> {
    method: Method,
    target: &'b str,
    http10: bool,
}

impl<'b> RequestLine<'b> {
    fn from_head(head: &httparse::Request<'_, 'b>) -> Result<Self, HttpError> {
        // httparse fills all three on `Complete`; no unwrap all the same.
        match (head.method, head.path, head.version) {
            (Some(method), Some(target), Some(version)) => Ok(Self {
                method: Method::from_token(method),
                target,
                http10: version == 0,
            }),
            _ => Err(HttpError::Malformed("invalid request line")),
        }
    }

    fn path_and_query(&self) -> (String, Option<String>) {
        match self.target.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (self.target.to_owned(), None),
        }
    }
}

/// The headers shardcast reads; all others are ignored unexamined.
#[derive(Debug, Clone, Copy)]
enum Known {
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    SystemId,
    Token,
    AdminToken,
    WsKey,
    WsVersion,
    WsExtensions,
    UserAgent,
}

const KNOWN_HEADERS: [(&str, Known); 11] = [
    ("content-length", Known::ContentLength),
    ("transfer-encoding", Known::TransferEncoding),
    ("connection", Known::Connection),
    ("upgrade", Known::Upgrade),
    ("systemid", Known::SystemId),
    ("token", Known::Token),
    ("admintoken", Known::AdminToken),
    ("sec-websocket-key", Known::WsKey),
    ("sec-websocket-version", Known::WsVersion),
    ("sec-websocket-extensions", Known::WsExtensions),
    ("user-agent", Known::UserAgent),
];

impl Known {
    fn classify(name: &str) -> Option<Self> {
        KNOWN_HEADERS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, kind)| kind)
    }
}

/// The `Connection` tokens that matter, accumulated over all such headers.
#[derive(Debug, Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

impl ConnectionTokens {
    fn absorb(&mut self, value: &str) {
        for token in tokens(value) {
            self.close |= token.eq_ignore_ascii_case("close");
            self.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            self.upgrade |= token.eq_ignore_ascii_case("upgrade");
        }
    }

    fn persistent(&self, http10: bool) -> bool {
        !self.close && (self.keep_alive || !http10)
    }
}

/// Everything learnt from one pass over the headers.
#[derive(Debug, Default)]
struct HeaderScan<'b> {
    content_length: Option<usize>,
    connection: ConnectionTokens,
    upgrade_websocket: bool,
    system_id: Option<String>,
    token: Option<String>,
    admin_token: Option<String>,
    ws_key: Option<String>,
    ws_version: Option<String>,
    /// Borrowed: copied only into an upgrade request.
    ws_extensions: Vec<&'b str>,
    user_agent: Option<&'b str>,
}

impl<'b> HeaderScan<'b> {
    fn collect(headers: &[httparse::Header<'b>]) -> Result<Self, HttpError> {
        let mut scan = Self::default();
        for header in headers {
            match Known::classify(header.name) {
                // Read only to judge an upgrade's offers: a line that is no
                // UTF-8 is one offer list that does not parse, not a bad request.
                Some(Known::WsExtensions) => scan.ws_extensions.extend(utf8(header.value)),
                Some(Known::UserAgent) => scan.user_agent = scan.user_agent.or(utf8(header.value)),
                Some(kind) => scan.absorb(kind, header_str(header.value)?)?,
                None => {}
            }
        }
        Ok(scan)
    }

    fn absorb(&mut self, kind: Known, value: &str) -> Result<(), HttpError> {
        match kind {
            Known::ContentLength => self.set_content_length(value),
            Known::TransferEncoding => Err(HttpError::Malformed(
                "chunked bodies are not supported; send Content-Length",
            )),
            Known::Connection => {
                self.connection.absorb(value);
                Ok(())
            }
            Known::Upgrade => {
                self.upgrade_websocket |= has_token(value, "websocket");
                Ok(())
            }
            Known::SystemId => set_once(&mut self.system_id, value),
            Known::Token => set_once(&mut self.token, value),
            Known::AdminToken => set_once(&mut self.admin_token, value),
            Known::WsKey => set_once(&mut self.ws_key, value),
            Known::WsVersion => set_once(&mut self.ws_version, value),
            Known::WsExtensions | Known::UserAgent => Ok(()),
        }
    }

    /// Repeats are tolerated only when they agree (RFC 9112 §6.3).
    fn set_content_length(&mut self, value: &str) -> Result<(), HttpError> {
        let len = parse_content_length(value)?;
        match self.content_length.replace(len) {
            Some(previous) if previous != len => {
                Err(HttpError::Malformed("conflicting Content-Length headers"))
            }
            _ => Ok(()),
        }
    }

    fn body_len(&self, limits: &Limits) -> Result<usize, HttpError> {
        match self.content_length.unwrap_or(0) {
            len if len > limits.max_body => Err(HttpError::BodyTooLarge),
            len => Ok(len),
        }
    }

    fn into_request(self, line: RequestLine<'_>, body: Bytes) -> Request {
        let (path, query) = line.path_and_query();
        let websocket = (self.upgrade_websocket && self.connection.upgrade).then_some(WsUpgrade {
            key: self.ws_key,
            version: self.ws_version,
            extensions: (!self.ws_extensions.is_empty()).then(|| self.ws_extensions.join(", ")),
            user_agent: self.user_agent.map(str::to_owned),
        });
        Request {
            method: line.method,
            path,
            query,
            http10: line.http10,
            keep_alive: self.connection.persistent(line.http10),
            system_id: self.system_id,
            token: self.token,
            admin_token: self.admin_token,
            websocket,
            body,
        }
    }
}

/// A header value as text, trimmed; None when it is not UTF-8.
fn utf8(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value).ok().map(str::trim_ascii)
}

fn header_str(value: &[u8]) -> Result<&str, HttpError> {
    std::str::from_utf8(value)
        .map(str::trim_ascii)
        .map_err(|_| HttpError::Malformed("header value is not valid UTF-8"))
}

/// A credential or handshake header given twice is ambiguous: reject it
/// rather than guess which copy a proxy in front of us looked at.
fn set_once(slot: &mut Option<String>, value: &str) -> Result<(), HttpError> {
    match slot {
        Some(_) => Err(HttpError::Malformed("header must not be repeated")),
        None => {
            *slot = Some(value.to_owned());
            Ok(())
        }
    }
}

/// `Content-Length = 1*DIGIT`; a number that does not even fit `usize` is
/// certainly over the body limit.
fn parse_content_length(value: &str) -> Result<usize, HttpError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::Malformed("invalid Content-Length"));
    }
    value.parse().map_err(|_| HttpError::BodyTooLarge)
}

/// The non-empty elements of a comma-separated header list.
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim_ascii)
        .filter(|token| !token.is_empty())
}

fn has_token(value: &str, wanted: &str) -> bool {
    tokens(value).any(|token| token.eq_ignore_ascii_case(wanted))
}

/// Finds `name=value` in a query string and percent-decodes the value, `+`
/// meaning space. Invalid escapes are kept literally; a name without `=`
/// yields an empty value. Names are compared after decoding, exactly.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Borrows when there is nothing to decode. Decoded bytes that are not UTF-8
/// become U+FFFD.
fn percent_decode(input: &str) -> Cow<'_, str> {
    if !input.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(input);
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let (byte, width) = match b {
            b'+' => (b' ', 1),
            b'%' => bytes
                .get(i + 1..i + 3)
                .and_then(decode_escape)
                .map_or((b'%', 1), |decoded| (decoded, 3)),
            _ => (b, 1),
        };
        out.push(byte);
        i += width;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn decode_escape(pair: &[u8]) -> Option<u8> {
    let &[high, low] = pair else {
        return None;
    };
    Some(hex_value(high)? << 4 | hex_value(low)?)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head: DEFAULT_MAX_HEAD,
        max_body: 1024,
    };

    fn parse(buf: &[u8]) -> Result<Parsed, HttpError> {
        parse_request(buf, &LIMITS)
    }

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse(buf) {
            Ok(Parsed::Complete { request, consumed }) => (request, consumed),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn request(buf: &[u8]) -> Request {
        let (request, consumed) = complete(buf);
        assert_eq!(consumed, buf.len());
        request
    }

    fn error(buf: &[u8]) -> HttpError {
        match parse(buf) {
            Err(err) => err,
            Ok(parsed) => panic!("expected an error, got {parsed:?}"),
        }
    }

    fn is_incomplete(buf: &[u8]) -> bool {
        matches!(parse(buf), Ok(Parsed::Incomplete))
    }

    #[test]
    fn simple_get() {
        let req = request(b"GET /ws?systemId=demo&token=t HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.path, "/ws");
        assert_eq!(req.query.as_deref(), Some("systemId=demo&token=t"));
        assert!(!req.http10);
        assert!(req.keep_alive);
        assert!(req.websocket.is_none());
        assert!(req.body.is_empty());
        assert_eq!(req.system_id, None);
    }

    #[test]
    fn post_with_body_and_credentials() {
        let req = request(
            b"POST /api/push HTTP/1.1\r\nSystemId:  demo \r\nToken: abc\r\n\
              AdminToken: root\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n",
        );
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.path, "/api/push");
        assert_eq!(req.query, None);
        assert_eq!(req.system_id.as_deref(), Some("demo"));
        assert_eq!(req.token.as_deref(), Some("abc"));
        assert_eq!(req.admin_token.as_deref(), Some("root"));
        assert_eq!(&req.body[..], b"{\"a\":\"bc\"}\n");
    }

    #[test]
    fn other_methods_are_other() {
        assert_eq!(request(b"PUT / HTTP/1.1\r\n\r\n").method, Method::Other);
        assert_eq!(request(b"get / HTTP/1.1\r\n\r\n").method, Method::Other);
    }

    #[test]
    fn header_names_are_case_insensitive() {
        for name in ["systemid", "SYSTEMID", "SystemId", "sYsTeMiD"] {
            let buf = format!("GET / HTTP/1.1\r\n{name}: demo\r\ncontent-LENGTH: 0\r\n\r\n");
            assert_eq!(request(buf.as_bytes()).system_id.as_deref(), Some("demo"));
        }
    }

    #[test]
    fn keep_alive_rules() {
        let cases: [(&[u8], bool); 7] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false),
        ];
        for (buf, keep_alive) in cases {
            let req = request(buf);
            assert_eq!(
                req.keep_alive,
                keep_alive,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        assert!(request(b"GET / HTTP/1.0\r\n\r\n").http10);
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_consumed() {
        let buf = b"\r\n\r\nGET /health HTTP/1.1\r\n\r\n";
        assert_eq!(request(buf).path, "/health");
    }

    #[test]
    fn pipelined_requests_split_at_every_length() {
        let parts: [&[u8]; 3] = [
            b"POST /api/push HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /api/push?x=1 HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc",
            b"GET /health HTTP/1.1\r\n\r\n",
        ];
        let buf = parts.concat();
        let first = parts[0].len();
        for len in 0..=buf.len() {
            match parse(&buf[..len]) {
                Ok(Parsed::Incomplete) => assert!(len < first, "incomplete at {len}"),
                Ok(Parsed::Complete { request, consumed }) => {
                    assert!(len >= first, "complete too early at {len}");
                    assert_eq!(consumed, first);
                    assert_eq!(&request.body[..], b"hello");
                }
                Err(err) => panic!("error at prefix {len}: {err}"),
            }
        }
        let mut rest = &buf[..];
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let (req, consumed) = complete(rest);
            seen.push((req.method, req.path, req.body));
            rest = &rest[consumed..];
        }
        let expected = [
            (Method::Post, "/api/push", &b"hello"[..]),
            (Method::Post, "/api/push", b"abc"),
            (Method::Get, "/health", b""),
        ];
        assert_eq!(seen.len(), expected.len());
        for ((method, path, body), (want_method, want_path, want_body)) in seen.iter().zip(expected)
        {
            assert_eq!(
                (*method, path.as_str(), &body[..]),
                (want_method, want_path, want_body)
            );
        }
    }

    fn head_with_filler(filler: usize) -> Vec<u8> {
        let mut buf = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
        buf.resize(buf.len() + filler, b'a');
        buf
    }

    #[test]
    fn head_too_large_when_complete() {
        let mut buf = head_with_filler(DEFAULT_MAX_HEAD);
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(error(&buf), HttpError::HeadTooLarge);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
    }

    #[test]
    fn head_too_large_while_incomplete() {
        let buf = head_with_filler(DEFAULT_MAX_HEAD);
        assert_eq!(error(&buf), HttpError::HeadTooLarge);
        assert!(is_incomplete(&buf[..DEFAULT_MAX_HEAD]));
    }

    #[test]
    fn head_of_exactly_max_head_is_accepted() {
        let fixed = head_with_filler(0).len() + 4;
        let mut buf = head_with_filler(DEFAULT_MAX_HEAD - fixed);
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(buf.len(), DEFAULT_MAX_HEAD);
        request(&buf);
        buf.insert(20, b'a');
        assert_eq!(error(&buf), HttpError::HeadTooLarge);
    }

    #[test]
    fn too_many_headers_is_head_too_large() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(error(&buf), HttpError::HeadTooLarge);
    }

    #[test]
    fn body_too_large_with_only_the_head() {
        let err = error(b"POST /api/push HTTP/1.1\r\nContent-Length: 1025\r\n\r\n");
        assert_eq!(err, HttpError::BodyTooLarge);
        assert_eq!(err.status(), 413);
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(error(huge), HttpError::BodyTooLarge);
        assert!(is_incomplete(
            b"POST / HTTP/1.1\r\nContent-Length: 1024\r\n\r\n"
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        let cases: [&[u8]; 6] = [
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"hello world\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n: x\r\n\r\n",
            b"GET\x00/ HTTP/1.1\r\n\r\n",
        ];
        for buf in cases {
            let err = error(buf);
            assert!(matches!(err, HttpError::Malformed(_)), "{err:?}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn a_line_ending_without_cr_is_malformed() {
        let cases: [&[u8]; 6] = [
            b"GET /healthz HTTP/1.1\n\n",
            b"GET /healthz HTTP/1.1\nHost: x\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\n",
            b"\nGET /healthz HTTP/1.1\r\n\r\n",
            b"POST /api/send_to_system HTTP/1.1\r\nSystemId: a\nContent-Length: 2\r\n\r\n{}",
        ];
        for buf in cases {
            let err = error(buf);
            assert_eq!(
                err,
                HttpError::Malformed("line ending without CR"),
                "{buf:?}"
            );
            assert_eq!(err.status(), 400);
        }
        // Refused as soon as the bare LF has arrived, before the head is complete.
        assert!(matches!(
            error(b"GET /healthz HTTP/1.1\nHost: x"),
            HttpError::Malformed(_)
        ));
        // A CR at the end of one read and its LF at the start of the next are fine.
        assert!(is_incomplete(b"GET /healthz HTTP/1.1\r"));
        request(b"GET /healthz HTTP/1.1\r\n\r\n");
        // A LF in the body is the body's business.
        let req = request(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\na\nb");
        assert_eq!(&req.body[..], b"a\nb");
    }

    #[test]
    fn transfer_encoding_is_rejected() {
        let err =
            error(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        let message = "chunked bodies are not supported; send Content-Length";
        assert_eq!(err, HttpError::Malformed(message));
    }

    #[test]
    fn bad_content_length_is_malformed() {
        for value in ["abc", "-1", "+5", "1 2", "0x10", "", "5,5"] {
            let buf = format!("POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\nhello");
            let err = error(buf.as_bytes());
            assert!(matches!(err, HttpError::Malformed(_)), "{value:?}: {err:?}");
        }
        let conflicting = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 4\r\n\r\nhello";
        assert!(matches!(error(conflicting), HttpError::Malformed(_)));
    }

    #[test]
    fn repeated_equal_content_length_is_accepted() {
        let req =
            request(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(&req.body[..], b"hello");
    }

    #[test]
    fn repeated_credentials_are_malformed() {
        let buf = b"POST / HTTP/1.1\r\nToken: a\r\ntoken: b\r\n\r\n";
        assert!(matches!(error(buf), HttpError::Malformed(_)));
    }

    #[test]
    fn non_utf8_values_are_malformed_only_where_read() {
        let read = b"GET / HTTP/1.1\r\nToken: \xff\xfe\r\n\r\n";
        assert!(matches!(error(read), HttpError::Malformed(_)));
        let ignored = b"GET / HTTP/1.1\r\nX-Other: \xff\xfe\r\n\r\n";
        request(ignored);
    }

    #[test]
    fn websocket_upgrade_is_detected() {
        let req = request(
            b"GET /ws?systemId=demo HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\
              Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        );
        let ws = req.websocket.expect("an upgrade");
        assert_eq!(ws.key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(ws.version.as_deref(), Some("13"));
        assert!(req.keep_alive);
    }

    #[test]
    fn extension_lines_are_joined_in_order_and_the_first_user_agent_kept() {
        let req = request(
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Extensions: a; x=1, b\r\nUser-Agent:  first \r\n\
              sec-websocket-extensions:\xff\r\nUser-Agent: second\r\n\
              Sec-WebSocket-Extensions: permessage-deflate \r\n\r\n",
        );
        let ws = req.websocket.expect("an upgrade");
        // A line that is not UTF-8 is left out, not a bad request.
        assert_eq!(
            ws.extensions.as_deref(),
            Some("a; x=1, b, permessage-deflate")
        );
        assert_eq!(ws.user_agent.as_deref(), Some("first"));
        let plain =
            request(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        let ws = plain.websocket.expect("an upgrade");
        assert_eq!((ws.extensions, ws.user_agent), (None, None));
        let api = request(b"POST /api HTTP/1.1\r\nUser-Agent: \xff\r\n\r\n");
        assert!(
            api.websocket.is_none(),
            "a user agent that is not UTF-8 is no error"
        );
    }

    #[test]
    fn upgrade_needs_the_connection_token() {
        let no_token = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n";
        assert!(request(no_token).websocket.is_none());
        let no_connection = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        assert!(request(no_connection).websocket.is_none());
        let other_protocol = b"GET /ws HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
        assert!(request(other_protocol).websocket.is_none());
    }

    #[test]
    fn query_param_decodes_values() {
        let query = "systemId=demo%20app&token=a+b%2Bc&bad=%zz%4&utf=%C3%A9";
        assert_eq!(query_param(query, "systemId").as_deref(), Some("demo app"));
        assert_eq!(query_param(query, "token").as_deref(), Some("a b+c"));
        assert_eq!(query_param(query, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(query_param(query, "utf").as_deref(), Some("é"));
        assert!(matches!(
            query_param("a=plain", "a"),
            Some(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn query_param_missing_empty_and_prefixes() {
        assert_eq!(query_param("systemIdx=1&token=t", "systemId"), None);
        assert_eq!(query_param("xsystemId=1", "systemId"), None);
        assert_eq!(
            query_param("systemIdx=1&systemId=2", "systemId").as_deref(),
            Some("2")
        );
        assert_eq!(
            query_param("systemId=&token=t", "systemId").as_deref(),
            Some("")
        );
        assert_eq!(query_param("flag&token=t", "flag").as_deref(), Some(""));
        assert_eq!(query_param("", "systemId"), None);
        assert_eq!(query_param("a=1&a=2", "a").as_deref(), Some("1"));
    }

    /// Tiny xorshift64 PRNG: deterministic, no extra dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }

    /// Bytes that steer random input into interesting parser states.
    const ALPHABET: &[u8] =
        b"GETPOST /?=&%+:\r\n\t,HTTP/1.01 Content-Length Connection Upgrade 0123456789";

    fn random_input(rng: &mut XorShift) -> Vec<u8> {
        let mut buf = if rng.next() & 1 == 0 {
            b"POST /ws?systemId=a HTTP/1.1\r\nContent-Length: 4\r\nConnection: upgrade\r\n\r\nbody"
                .to_vec()
        } else {
            Vec::new()
        };
        for _ in 0..rng.below(64) {
            let byte = match rng.next() % 3 {
                0 => rng.next() as u8,
                _ => ALPHABET[rng.below(ALPHABET.len())],
            };
            match (buf.is_empty(), rng.next() & 1) {
                (false, 0) => {
                    let at = rng.below(buf.len());
                    buf[at] = byte;
                }
                _ => buf.push(byte),
            }
        }
        buf
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut completed = 0;
        for _ in 0..10_000 {
            let buf = random_input(&mut rng);
            let limits = Limits {
                max_head: rng.below(200),
                max_body: rng.below(8),
            };
            for limits in [limits, LIMITS] {
                if let Ok(Parsed::Complete { request, consumed }) = parse_request(&buf, &limits) {
                    assert!(consumed <= buf.len());
                    assert!(request.body.len() <= limits.max_body);
                    let _ = query_param(request.query.as_deref().unwrap_or(""), "systemId");
                    completed += 1;
                }
            }
            let _ = query_param(&String::from_utf8_lossy(&buf), "a");
        }
        assert!(
            completed > 0,
            "the generator never produced a valid request"
        );
    }
}
