//! A WebSocket upgrade request (docs/api.md §2): the 101 answer (or an
//! HTTP error) with permessage-deflate if the client offers it and it is on
//! (§10), admission of the system and connect token (refused after
//! the upgrade with a -1001 frame, as go-websocket does), then the
//! connection is opened on this core, whose reader task reads it from then
//! on — or, for a resume (§8), handed to the session it names.

use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::api::connect_token;
use crate::api::envelope::error_envelope;
use crate::api::error::ApiError;
use crate::clock::unix_seconds;
use crate::config::{AuthMode, ConnectTokenMode};
use crate::core::resume::ResumeTarget;
use crate::core::{refuse, Core, CoreRef};
use crate::http::request::{query_param, Method, Request};
use crate::http::response::{write_json, write_response, write_switching_protocols};
use crate::mailbox::ResumeRequest;
use crate::metrics::ResumeResult;
use crate::socket;
use crate::ws::deflate::{offer, Deflate};
use crate::ws::Last;

/// Who may connect: the system, and the userId a connect token binds (or
/// why the client may not connect on its own: a missing or bad token).
struct Admission {
    system: String,
    user: Result<String, ApiError>,
    /// Token mode: the userId of a valid connect token presented.
    token_user: Option<String>,
    resume: Resume,
}

/// What the client asked of a resume (docs/api.md §8).
enum Resume {
    NotAsked,
    /// A token this node cannot honour: the connection is a new one.
    Invalid,
    Target(ResumeTarget, Last),
}

/// Serves an upgrade request: answers 101 (or an HTTP error), admits or
/// refuses the client and registers the connection — or hands it to the
/// session it resumes. An admitted client gets the 101 and its welcome
/// frame in one write.
///
/// `place`: a place under `server.max_connections` the connection already
/// holds (it waited for this request under it, the HTTP places being
/// taken); else one is taken here.
pub async fn serve(
    core: CoreRef,
    stream: Rc<TcpStream>,
    req: Request,
    rest: BytesMut,
    place: Option<ConnPlace>,
) {
    let prepared = prepare(&core, &req, place);
    drop(req);
    let (
        Answer {
            bytes: answer,
            deflate,
        },
        admission,
        place,
    ) = match prepared {
        Ok(admitted) => admitted,
        Err(response) => {
            let _ = socket::write_all(&stream, response).await;
            return;
        }
    };
    let lang = core.borrow().node.config.api.lang;
    let asked = match admission.as_ref().map(|a| &a.resume) {
        Ok(Resume::Invalid) => {
            core.borrow().metrics().resume(ResumeResult::Invalid);
            true
        }
        _ => false,
    };
    let admission = match admission {
        Ok(Admission {
            system,
            user,
            token_user,
            resume: Resume::Target(target, last),
        }) => {
            // The core that owns the session gives the place back or keeps it.
            place.keep();
            let req = ResumeRequest {
                addr: target.addr,
                seq: target.seq,
                system: Arc::from(system),
                last,
                answer,
                deflate,
                rest: rest.freeze(),
                fallback: user,
                token_user,
            };
            Core::take_resume(&core, stream, target.core, req);
            return;
        }
        other => other,
    };
    let opened = admission.and_then(|a| {
        let user = a.user?;
        let mut c = core.borrow_mut();
        c.open_conn(
            stream.clone(),
            &a.system,
            &user,
            answer.clone(),
            deflate,
            asked,
        )
        .ok_or(ApiError::Busy)
    });
    match opened {
        Ok(addr) => {
            // The connection holds its place now; `close_conn` gives it back.
            place.keep();
            let mut c = core.borrow_mut();
            if !rest.is_empty() {
                c.feed(addr, &rest);
            }
            c.flush();
        }
        Err(e) => refuse(&stream, answer, &e.message(lang)).await,
    }
}

/// The 101 answer, and what it agreed to of permessage-deflate.
struct Answer {
    bytes: Bytes,
    deflate: Option<Deflate>,
}

type Prepared = Result<(Answer, Result<Admission, ApiError>, ConnPlace), Bytes>;

/// A place under `server.max_connections`, given back on drop unless the
/// connection that took it was opened.
pub(super) struct ConnPlace(Arc<crate::node::Node>);

impl ConnPlace {
    /// A place for one more WebSocket; None when `server.max_connections`
    /// are taken.
    pub(super) fn take(node: &Arc<crate::node::Node>) -> Option<ConnPlace> {
        // `then`, not `then_some`: a place built and dropped on refusal
        // would give back a place it never took.
        node.reserve_connection().then(|| ConnPlace(node.clone()))
    }

    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for ConnPlace {
    fn drop(&mut self) {
        self.0.release_connection();
    }
}

/// Checks the handshake and capacity (HTTP errors), then admission
/// (refused after the upgrade, with a -1001 frame as go-websocket does).
fn prepare(core: &CoreRef, req: &Request, place: Option<ConnPlace>) -> Prepared {
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
    let place = match c.node.is_draining() {
        true => None,
        false => place.or_else(|| ConnPlace::take(&c.node)),
    };
    let Some(place) = place else {
        let body = error_envelope(&ApiError::Busy, c.node.config.api.lang);
        write_json(&mut out, 503, &body, false, false);
        return Err(out.freeze());
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let ws = &c.node.config.ws;
    let agreed = upgrade.and_then(|u| {
        offer::for_request(
            ws.compression,
            u.extensions.as_deref(),
            u.user_agent.as_deref(),
        )
    });
    let extensions = agreed.map(|a| a.answer());
    write_switching_protocols(&mut out, &accept, extensions.as_deref());
    let answer = Answer {
        bytes: out.freeze(),
        deflate: agreed.map(|a| a.deflate),
    };
    Ok((answer, admit(core, req), place))
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
    let mut user = Ok(String::new());
    let mut token_user = None;
    if api.auth == AuthMode::Token {
        let token = query_param(query, "token").filter(|t| !t.is_empty());
        let secret = entry.secret.as_deref().unwrap_or("");
        token_user = token.as_deref().and_then(|t| {
            connect_token::verify(t, secret, unix_seconds(), api.connect_token_max_ttl)
        });
        user = match (&token_user, token.is_some()) {
            (Some(u), _) => Ok(u.clone()),
            (None, true) => Err(ApiError::BadToken),
            (None, false) if api.connect_token == ConnectTokenMode::Required => {
                Err(ApiError::BadToken)
            }
            (None, false) => Ok(String::new()),
        };
    }
    let resume = match query_param(query, "resume").filter(|t| !t.is_empty()) {
        _ if !c.resume_on() => Resume::NotAsked,
        None => Resume::NotAsked,
        Some(token) => match c.resume_target(&system, &token) {
            Some(target) => {
                Resume::Target(target, Last::parse(query_param(query, "last").as_deref()))
            }
            None => Resume::Invalid,
        },
    };
    Ok(Admission {
        system: system.into_owned(),
        user,
        token_user,
        resume,
    })
}
