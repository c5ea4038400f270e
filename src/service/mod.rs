//! What answers on the http port: one accepted TCP connection's HTTP/1.1
//! requests with keep-alive and pipelining, until it upgrades to a
//! WebSocket (`upgrade`) or closes. API calls go to `api`, operations
//! routes and the console are answered here.
//!
//! Responses to pipelined requests are collected and written together, up to
//! `api.max_pending_answers` bytes; a client that does not read them within
//! `api.request_timeout` is closed, so pipelining never makes the node hold
//! more than that per connection. At most `api.max_http_connections` are
//! open at once, WebSockets not counted even while they upgrade: at the
//! limit the core's longest-idle keep-alive connection is closed to admit
//! one more, and with none idle one more is answered 503 and closed
//! (`places`).
//! Limits protect everyone else: a head over 16 KiB (431), a body over
//! `api.max_body` (413, answered without reading the body), garbage (400)
//! and a request not complete within `api.request_timeout` of its first
//! byte (408) each get an answer and a closed connection.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::net::TcpStream;

mod api;
mod handlers;
mod places;
mod upgrade;

pub use places::HttpConns;

use crate::api::envelope::error_envelope;
use crate::api::error::{ApiError, Limit};
use crate::core::CoreRef;
use crate::http::request::{parse_request, Limits, Method, Parsed, Request, DEFAULT_MAX_HEAD};
use crate::http::response::{write_json, write_public_script, write_response};
use crate::socket;
use places::HttpPlace;

/// How long, and how much, a refused connection is read before it closes.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
const REFUSAL_LINGER_BYTES: usize = 256 * 1024;

/// What the first read of a connection may take: a WebSocket upgrade
/// request fits (a few hundred bytes); a longer request grows the buffer
/// (`socket::read_some`). Small because a burst of connects holds one
/// buffer per handshake in flight, and the pages the allocator keeps of
/// them count in the server's memory.
const FIRST_READ: usize = 1024;

/// Serves one accepted connection of this core; `conns` is the core's
/// (its idle HTTP connections, `places`).
pub async fn serve(core: CoreRef, conns: Rc<HttpConns>, stream: TcpStream) {
    let stream = Rc::new(stream);
    let node = core.borrow().node.clone();
    // At the limit, the first request says what the connection is: a
    // WebSocket upgrade needs no HTTP place, so the connection waits for it
    // under a place of `server.max_connections` instead (bounded in number
    // like WebSockets, in time by `api.request_timeout`, in bytes by a
    // request head); anything else then takes a place (a free one, or that
    // of the core's longest-idle connection) or is refused. With no place of
    // either kind, only an idle connection's place lets it in (closing an
    // idle one for what may be a WebSocket then refused: both limits are
    // taken, a rare state).
    let mut place = HttpPlace::take(&node, &conns);
    let mut waiting = None;
    if place.is_none() {
        match upgrade::ConnPlace::take(&node) {
            Some(p) => waiting = Some((p, Instant::now() + node.config.api.request_timeout)),
            None => place = evict(&core, &conns),
        }
        if place.is_none() && waiting.is_none() {
            refuse_busy(&core, &stream).await;
            return;
        }
    }
    let (limits, request_timeout, keepalive_timeout, max_pending) = {
        let api = &node.config.api;
        let limits = Limits {
            max_head: DEFAULT_MAX_HEAD,
            max_body: api.max_body,
        };
        let t = (api.request_timeout, api.keepalive_timeout);
        (limits, t.0, t.1, api.max_pending_answers)
    };
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let mut out = BytesMut::new();
    let mut started: Option<Instant> = None;
    loop {
        // Answers what is complete, until the answers held reach
        // `api.max_pending_answers`: then they are written (and the client
        // must read them) before the next request is looked at.
        let held_back = loop {
            if out.len() >= max_pending {
                break true;
            }
            match parse_request(&buf, &limits) {
                Ok(Parsed::Complete { request, consumed }) => {
                    let _ = buf.split_to(consumed);
                    started = None;
                    if request.websocket.is_some() {
                        // The upgrade ends this task: an open connection has
                        // no task of its own (`core::conn::reader`). It needs
                        // no HTTP place: it counts toward
                        // `server.max_connections` (or is answered an error
                        // and closed at once).
                        if flush_and_answer(&core, &stream, &mut out).await {
                            drop((out, place));
                            let waited = waiting.map(|(p, _)| p);
                            upgrade::serve(core, stream, request, buf, waited).await;
                        }
                        return;
                    }
                    if place.is_none() {
                        // Not a WebSocket: an HTTP connection after all.
                        waiting = None;
                        place = take_or_evict(&core, &conns);
                        if place.is_none() {
                            refuse_busy(&core, &stream).await;
                            return;
                        }
                    }
                    let keep = request.keep_alive && !node.is_draining();
                    respond(&core, &request, &mut out, keep).await;
                    if !keep {
                        flush_and_answer(&core, &stream, &mut out).await;
                        return;
                    }
                }
                Ok(Parsed::Incomplete) if waiting.is_some() && buf.len() > DEFAULT_MAX_HEAD => {
                    // More than a request head and still incomplete: a body
                    // follows, so not a WebSocket upgrade.
                    waiting = None;
                    place = take_or_evict(&core, &conns);
                    if place.is_none() {
                        refuse_busy(&core, &stream).await;
                        return;
                    }
                }
                Ok(Parsed::Incomplete) => break false,
                Err(e) => {
                    refuse(&core, &mut out, e.status(), &e);
                    close_after_refusal(&core, &stream, &mut out).await;
                    return;
                }
            }
        };
        if !flush_and_answer(&core, &stream, &mut out).await {
            return;
        }
        if held_back {
            continue;
        }
        let idle = buf.is_empty() && started.is_none();
        let wait = match (&waiting, started) {
            (Some((_, until)), _) => until.saturating_duration_since(Instant::now()),
            (None, None) if idle => keepalive_timeout,
            (None, _) => request_timeout
                .saturating_sub(started.map_or_else(Default::default, |s| s.elapsed())),
        };
        let read = monoio::time::timeout(wait, socket::read_some(&stream, &mut buf));
        let read = match place.as_ref().filter(|_| idle) {
            // Idle: the connection may be closed for a newcomer meanwhile.
            Some(p) => {
                p.idle();
                let read = monoio::select! {
                    read = read => Some(read),
                    () = p.evicted() => None,
                };
                p.busy();
                match read {
                    Some(read) if !p.is_evicted() => read,
                    _ => return,
                }
            }
            None => read.await,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {
                started.get_or_insert_with(Instant::now);
            }
            Err(_) => {
                if !buf.is_empty() || started.is_some() {
                    refuse(&core, &mut out, 408, &"request not complete in time");
                    close_after_refusal(&core, &stream, &mut out).await;
                }
                return;
            }
        }
    }
}

/// A free place under `api.max_http_connections`, or at the limit the
/// place of this core's longest-idle connection (`evict`); None when there
/// is neither.
fn take_or_evict(core: &CoreRef, conns: &Rc<HttpConns>) -> Option<HttpPlace> {
    let node = core.borrow().node.clone();
    HttpPlace::take(&node, conns).or_else(|| evict(core, conns))
}

/// The place of this core's longest-idle HTTP connection, which is closed
/// (counted as a hit of `api.max_http_connections`); None when none is idle.
fn evict(core: &CoreRef, conns: &Rc<HttpConns>) -> Option<HttpPlace> {
    let node = core.borrow().node.clone();
    let place = HttpPlace::evict(&node, conns)?;
    core.borrow().metrics().limit_hit(Limit::MaxHttpConnections);
    Some(place)
}

/// The answer at `api.max_http_connections` with no place to take: 503
/// `服务繁忙`, and the connection closes.
async fn refuse_busy(core: &CoreRef, stream: &TcpStream) {
    let mut out = BytesMut::new();
    core.borrow().metrics().limit_hit(Limit::MaxHttpConnections);
    let lang = core.borrow().node.config.api.lang;
    write_json(
        &mut out,
        503,
        &error_envelope(&ApiError::Busy, lang),
        false,
        false,
    );
    close_after_refusal(core, stream, &mut out).await;
}

/// Answers a request the codec or the clock refused; the caller closes.
fn refuse(core: &CoreRef, out: &mut BytesMut, status: u16, why: &dyn std::fmt::Display) {
    let c = core.borrow();
    c.metrics().http_error(status);
    let lang = c.node.config.api.lang;
    match status {
        413 => write_json(
            out,
            413,
            &error_envelope(&ApiError::BodyTooLarge, lang),
            false,
            false,
        ),
        400 => write_json(
            out,
            400,
            &error_envelope(&ApiError::BadRequest, lang),
            false,
            false,
        ),
        _ => write_response(
            out,
            status,
            "text/plain; charset=utf-8",
            why.to_string().as_bytes(),
            false,
            false,
        ),
    }
}

async fn respond(core: &CoreRef, req: &Request, out: &mut BytesMut, keep: bool) {
    let text = "text/plain; charset=utf-8";
    let ops_get = req.method == Method::Get;
    let console = core.borrow().node.config.console.enabled;
    match req.path.as_str() {
        "/healthz" if ops_get => write_response(out, 200, text, b"ok", keep, req.http10),
        "/readyz" if ops_get => {
            let ready = core.borrow().node.is_ready();
            let (status, body): (u16, &[u8]) = if ready {
                (200, b"ready")
            } else {
                (503, b"not ready")
            };
            write_response(out, status, text, body, keep, req.http10);
        }
        "/metrics" if ops_get => {
            let node = core.borrow().node.clone();
            let mut body = node.metrics.render();
            if let Some(w) = &node.webhooks {
                w.stats().render(&mut body);
            }
            crate::metrics::process::render(&mut body, node.started_at);
            write_response(
                out,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                keep,
                req.http10,
            );
        }
        "/shardcast.js" if ops_get => {
            let body = crate::console::CLIENT_JS.as_bytes();
            write_public_script(out, body, keep, req.http10);
        }
        "/" if ops_get && console => write_response(
            out,
            200,
            "text/html; charset=utf-8",
            crate::console::PAGE.as_bytes(),
            keep,
            req.http10,
        ),
        "/console/stats" if ops_get && console => match api::console_access(core, req) {
            Some(access) => {
                let members = access == api::ConsoleAccess::Full;
                let body = crate::console::stats(&core.borrow().node, members);
                write_json(out, 200, body.as_bytes(), keep, req.http10);
            }
            None => {
                let lang = core.borrow().node.config.api.lang;
                let body = error_envelope(&ApiError::BadToken, lang);
                write_json(out, 401, &body, keep, req.http10);
            }
        },
        "/ws" => write_response(
            out,
            426,
            text,
            b"WebSocket upgrade required",
            keep,
            req.http10,
        ),
        _ => {
            let (status, body) = api::handle(core, req).await;
            write_json(out, status, &body, keep, req.http10);
        }
    }
}

/// Sends the refusal, half-closes and lingers briefly so the refusal is not
/// lost to a reset caused by the input we will not read.
async fn close_after_refusal(core: &CoreRef, stream: &TcpStream, out: &mut BytesMut) {
    if flush_and_answer(core, stream, out).await {
        socket::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
        socket::linger(stream, REFUSAL_LINGER_BYTES, REFUSAL_LINGER).await;
    }
}

/// Starts writing the pushes the answered requests queued on this core (the
/// core's `flush_later`: the other cores get theirs now, the sockets are
/// written by its flusher task once this task yields; one write
/// per connection for a whole batch of pipelined requests), then writes the
/// answers in `out`; false when the peer is gone, or has not read them within
/// `api.request_timeout` (the connection is then closed).
async fn flush_and_answer(core: &CoreRef, stream: &TcpStream, out: &mut BytesMut) -> bool {
    core.borrow_mut().flush_later();
    if out.is_empty() {
        return true;
    }
    let timeout = core.borrow().node.config.api.request_timeout;
    let write = socket::write_all(stream, out.split().freeze());
    match monoio::time::timeout(timeout, write).await {
        Ok(done) => done.is_ok(),
        Err(_) => {
            core.borrow().metrics().limit_hit(Limit::MaxPendingAnswers);
            false
        }
    }
}
