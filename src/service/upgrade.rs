//! A WebSocket upgrade request (docs/api.md §2): the 101 answer (or an
//! HTTP error), admission of the system and connect token (refused after
//! the upgrade with a -1001 frame, as go-websocket does), then the
//! connection is opened on this core, whose reader task reads it from then
//! on.

use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::api::connect_token;
use crate::api::envelope::error_envelope;
use crate::api::error::ApiError;
use crate::config::{AuthMode, ConnectTokenMode};
use crate::core::conn::reader::LINGER_BYTES;
use crate::core::{CoreRef, LINGER};
use crate::http::request::{query_param, Method, Request};
use crate::http::response::{write_json, write_response, write_switching_protocols};
use crate::node::unix_seconds;
use crate::socket;
use crate::ws::frame::close_frame;
use crate::ws::message::refusal_frame;

/// Who may connect: the system and the userId a connect token binds.
struct Admission {
    system: String,
    user_id: String,
}

/// Serves an upgrade request: answers 101 (or an HTTP error), admits or
/// refuses the client and registers the connection.
/// An admitted client gets the 101 and its welcome frame in one write.
pub async fn serve(core: CoreRef, stream: Rc<TcpStream>, req: Request, rest: BytesMut) {
    let prepared = prepare(&core, &req);
    drop(req);
    let (answer, admission, place) = match prepared {
        Ok(admitted) => admitted,
        Err(response) => {
            let _ = socket::write_all(&stream, response).await;
            return;
        }
    };
    let lang = core.borrow().node.config.api.lang;
    let opened = admission.and_then(|a| {
        let opened =
            core.borrow_mut()
                .open_conn(stream.clone(), &a.system, &a.user_id, answer.clone());
        opened.ok_or(ApiError::Busy)
    });
    match opened {
        Ok(addr) => {
            // The connection holds its place now; `close_conn` gives it back.
            place.keep();
            {
                let mut c = core.borrow_mut();
                if !rest.is_empty() {
                    c.feed(addr, &rest);
                }
                c.flush();
            }
        }
        Err(e) => {
            if socket::write_all(&stream, answer).await.is_ok() {
                refuse(&stream, &e.message(lang)).await;
            }
        }
    }
}

type Prepared = Result<(Bytes, Result<Admission, ApiError>, Place), Bytes>;

/// A place under `server.max_connections`, given back on drop unless the
/// connection that took it was opened.
struct Place(std::sync::Arc<crate::node::Node>);

impl Place {
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.release_connection();
    }
}

/// Checks the handshake and capacity (HTTP errors), then admission
/// (refused after the upgrade, with a -1001 frame as go-websocket does).
fn prepare(core: &CoreRef, req: &Request) -> Prepared {
    let c = core.borrow();
    let mut out = BytesMut::new();
    let upgrade = req.websocket.as_ref();
    let key = upgrade.and_then(|u| u.key.as_deref());
    let version_ok = upgrade.and_then(|u| u.version.as_deref()) == Some("13");
    if req.path != "/ws" {
        let body = error_envelope(&ApiError::NotFound, c.node.config.api.lang);
        write_json(&mut out, 404, &body, false, false);
        return Err(out.freeze());
    }
    let Some(key) = key.filter(|_| req.method == Method::Get && version_ok) else {
        let text = b"bad WebSocket handshake: GET with Sec-WebSocket-Key and Sec-WebSocket-Version: 13 required";
        write_response(
            &mut out,
            400,
            "text/plain; charset=utf-8",
            text,
            false,
            false,
        );
        return Err(out.freeze());
    };
    if c.node.is_draining() || !c.node.reserve_connection() {
        let body = error_envelope(&ApiError::Busy, c.node.config.api.lang);
        write_json(&mut out, 503, &body, false, false);
        return Err(out.freeze());
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    write_switching_protocols(&mut out, &accept);
    let place = Place(c.node.clone());
    Ok((out.freeze(), admit(core, req), place))
}

fn admit(core: &CoreRef, req: &Request) -> Result<Admission, ApiError> {
    let c = core.borrow();
    let query = req.query.as_deref().unwrap_or("");
    let system = query_param(query, "systemId").unwrap_or_default();
    if system.is_empty() {
        return Err(ApiError::SystemIdRequired);
    }
    let entry = c.system(&system).ok_or(ApiError::SystemIdInvalid)?;
    let api = &c.node.config.api;
    let mut user_id = String::new();
    if api.auth == AuthMode::Token {
        let token = query_param(query, "token").filter(|t| !t.is_empty());
        let secret = entry.secret.as_deref().unwrap_or("");
        match token {
            Some(t) => {
                user_id =
                    connect_token::verify(&t, secret, unix_seconds()).ok_or(ApiError::BadToken)?;
            }
            None if api.connect_token == ConnectTokenMode::Required => {
                return Err(ApiError::BadToken)
            }
            None => {}
        }
    }
    Ok(Admission {
        system: system.into_owned(),
        user_id,
    })
}

/// The -1001 refusal frame, close 1008, and a short linger.
async fn refuse(stream: &Rc<TcpStream>, msg: &str) {
    let mut frames = BytesMut::new();
    frames.extend_from_slice(&refusal_frame(msg));
    frames.extend_from_slice(&close_frame(1008));
    if socket::write_all(stream, frames.freeze()).await.is_ok() {
        socket::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
        socket::linger(stream, LINGER_BYTES, LINGER).await;
    }
}
