//! The `/api/*` routes (docs/api.md §4): routing by path, authentication
//! and the order in which errors are reported (§5).
//!
//! A request is checked in the contract's order — path, method, body size
//! (by the HTTP reader), JSON and field types, `SystemId`/`Token`, required
//! fields, limits — and only then handed to its route in `handlers`, which
//! sends through the core.

use std::sync::Arc;

use super::handlers;
use crate::api::auth::secret_matches;
use crate::api::body::{Body, BodyLimits};
use crate::api::envelope::{error_envelope, ok_envelope};
use crate::api::error::ApiError;
use crate::api::route::Route;
use crate::config::AuthMode;
use crate::core::CoreRef;
use crate::http::request::{Method, Request};

/// Answers one API request: (HTTP status, JSON envelope).
pub async fn handle(core: &CoreRef, req: &Request) -> (u16, Vec<u8>) {
    let started = std::time::Instant::now();
    let lang = core.borrow().node.config.api.lang;
    let Some(route) = Route::from_path(&req.path) else {
        return (404, error_envelope(&ApiError::NotFound, lang));
    };
    let result = if req.method != Method::Post {
        Err(ApiError::MethodNotAllowed)
    } else {
        // What other cores sent here before this request was made goes first.
        core.borrow_mut().take_mail();
        handlers::dispatch(core, route, req).await
    };
    {
        let c = core.borrow();
        c.metrics().api(route, result.is_ok());
        c.metrics().api_duration(route, started.elapsed());
        if let Some(limit) = result.as_ref().err().and_then(ApiError::limit) {
            c.metrics().limit_hit(limit);
        }
    }
    match result {
        Ok(data) => (200, ok_envelope(&data)),
        Err(e) => (e.status(), error_envelope(&e, lang)),
    }
}

/// Decodes the body and authenticates the caller, in the order of §5.
pub(super) fn prepare<B: Body>(core: &CoreRef, req: &Request) -> Result<(Arc<str>, B), ApiError> {
    let body = B::decode(&req.body)?;
    let system = authenticate(core, req)?;
    body.check_required()?;
    body.check_limits(&limits(core))?;
    Ok((system, body))
}

pub(super) fn limits(core: &CoreRef) -> BodyLimits {
    BodyLimits::from(&core.borrow().node.config.api)
}

/// The system named by the `SystemId` header, checked against its secret in
/// token mode.
/// Who may read `/console/stats`: anyone in open mode; in token mode the
/// holder of `AdminToken` (everything) or of a system's `Token` with its
/// `SystemId` (everything but the cluster members' addresses).
pub(super) fn console_access(core: &CoreRef, req: &Request) -> Option<ConsoleAccess> {
    let c = core.borrow();
    let api = &c.node.config.api;
    if api.auth != AuthMode::Token || secret_matches(req.admin_token.as_deref(), &api.admin_token) {
        return Some(ConsoleAccess::Full);
    }
    drop(c);
    authenticate(core, req).ok().map(|_| ConsoleAccess::System)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConsoleAccess {
    Full,
    System,
}

fn authenticate(core: &CoreRef, req: &Request) -> Result<Arc<str>, ApiError> {
    let c = core.borrow();
    let id = req
        .system_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(ApiError::SystemIdRequired)?;
    let entry = c.system(id).ok_or(ApiError::SystemIdInvalid)?;
    if c.node.config.api.auth == AuthMode::Token {
        let secret = entry.secret.as_deref().unwrap_or("");
        if !secret_matches(req.token.as_deref(), secret) {
            return Err(ApiError::BadToken);
        }
    }
    Ok(Arc::from(id))
}
