//! The webhook thread: a dispatcher that takes the events from the channel
//! (in submission order) and puts them on their lanes (see `lanes`), and one
//! sequential task per lane (started when the lane is created, ended when it
//! runs empty), each event tried once and then up to `webhook.retries` more
//! times with exponential backoff, unless the circuit breaker of its system
//! and URL is open.
//! All of them run on one `LocalSet` of the thread's current-thread
//! runtime, so they share their state (`Rc`, `RefCell`) without locks.
//!
//! Every attempt (connect, request, answer headers) is bounded by
//! `webhook.timeout`, so a hanging receiver costs a lane at most
//! `(retries + 1) * timeout` plus the backoff per event, and after 5 failed
//! attempts in a row for one system its breaker drops that system's events
//! at once. Redirects are not followed (a 3xx is a failed attempt), so
//! events only ever go to the configured address, and proxy variables are
//! ignored for the same reason.

use std::cell::Cell;
use std::error::Error;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Response, StatusCode};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::LocalSet;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, warn};

use super::breaker::{Breakers, OPEN_FOR};
use super::event::{EncodeError, Event};
use super::lanes::Lanes;
use super::{sign, DropReason, LaneKey, Shared};
use crate::config::WebhookConfig;
use crate::logtext::esc;

const USER_AGENT: &str = concat!("shardcast/", env!("CARGO_PKG_VERSION"));
/// Wait before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed before a typical server's keep-alive
/// limit (nginx: 75 s) would close them under a request.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Answer bytes read (and discarded) so that the connection can be reused.
const MAX_DISCARD: usize = 64 * 1024;
/// How long a stopping runtime waits for leftover blocking work (DNS).
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(200);

/// The one HTTP client (connection pool) of all lanes.
pub(super) fn client() -> Result<Client, reqwest::Error> {
    Client::builder()
        .user_agent(USER_AGENT)
        .pool_idle_timeout(POOL_IDLE)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("{reason}")]
    Http { reason: String, invalid: bool },
    /// Not tried: the breaker of the event's system and URL is open.
    #[error("circuit breaker open")]
    CircuitOpen,
}

impl Failure {
    /// Retrying cannot help: the event or its URL is malformed.
    fn is_final(&self) -> bool {
        matches!(self, Self::Encode(_) | Self::Http { invalid: true, .. })
    }
}

/// The error and its causes, without the URL (it may hold credentials).
impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Http {
            reason,
            invalid: e.is_builder(),
        }
    }
}

/// An encoded event, sent as is by every attempt (so its `eventId` is the
/// same on every retry).
struct Request {
    body: Bytes,
    signature: Option<String>,
}

impl Request {
    fn new(event: &Event, id: &str) -> Result<Self, EncodeError> {
        let body = Bytes::from(event.body(id)?);
        let signature = event
            .endpoint
            .secret
            .as_deref()
            .map(|secret| sign::signature(secret, &body));
        Ok(Self { body, signature })
    }
}

/// The `eventId`s of one run of the webhook thread: 32 lowercase hex
/// digits, 16 drawn at random when the thread starts (so ids differ across
/// nodes and restarts) and 16 counting the events it delivered. Only the
/// webhook thread draws them: no counter shared by cores.
pub(super) struct EventIds {
    run: u64,
    next: Cell<u64>,
}

impl EventIds {
    pub(super) fn new() -> Self {
        let mut seed = [0u8; 8];
        if getrandom::getrandom(&mut seed).is_err() {
            // No randomness: the clock keeps runs apart all the same.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            seed = (nanos ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
        }
        Self {
            run: u64::from_le_bytes(seed),
            next: Cell::new(0),
        }
    }

    pub(super) fn next(&self) -> String {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        format!("{:016x}{n:016x}", self.run)
    }
}

pub(super) struct Delivery {
    client: Client,
    ids: EventIds,
    timeout: Duration,
    retries: u32,
    breakers: Breakers,
    lanes: Lanes,
    shared: Arc<Shared>,
}

impl Delivery {
    pub(super) fn new(
        client: Client,
        config: &WebhookConfig,
        shared: Arc<Shared>,
        share: u64,
    ) -> Self {
        Self {
            client,
            ids: EventIds::new(),
            timeout: config.timeout,
            retries: config.retries,
            breakers: Breakers::default(),
            lanes: Lanes::new(Arc::clone(&shared), share),
            shared,
        }
    }

    /// Takes the events from the channel in submission order and puts each
    /// on its lane (starting the lane's task when the lane is new), or drops
    /// it when its system holds its share. Never returns (after the last
    /// `Webhooks` is gone it just waits).
    async fn dispatch(self: &Rc<Self>, events: &mut mpsc::UnboundedReceiver<Event>) {
        while let Some(event) = events.recv().await {
            if let Some(lane) = self.lanes.admit(event) {
                tokio::task::spawn_local(Rc::clone(self).serve(lane));
            }
        }
        std::future::pending::<()>().await;
    }

    /// One lane: its events one after the other, in submission order,
    /// until it is empty (then the lane is gone and so is its task).
    async fn serve(self: Rc<Self>, lane: LaneKey) {
        while let Some(event) = self.lanes.next(&lane) {
            self.deliver(&event).await;
            self.lanes.done(&lane.0);
        }
    }

    async fn deliver(&self, event: &Event) {
        let stats = &self.shared.stats;
        match self.try_all(event).await {
            Ok(()) => stats.deliver_one(),
            Err(Failure::CircuitOpen) => {
                stats.drop_some(DropReason::CircuitOpen, 1);
                debug!(system = %esc(&event.system_id), client = %event.client_id,
                    "webhook event dropped: circuit breaker open");
            }
            Err(error) => {
                stats.drop_some(DropReason::Failed, 1);
                warn!(system = %esc(&event.system_id), client = %event.client_id,
                    error = %esc(&error), "webhook event dropped");
            }
        }
    }

    /// The first attempt and up to `retries` more, with backoff between;
    /// none while the breaker of the event's system and URL is open.
    async fn try_all(&self, event: &Event) -> Result<(), Failure> {
        let request = Request::new(event, &self.ids.next())?;
        let system = event.system_id.as_str();
        let url = event.endpoint.url.as_str();
        let mut attempt = 0;
        loop {
            if self.breakers.is_open(system, url, Instant::now()) {
                return Err(Failure::CircuitOpen);
            }
            let error = match self.attempt(url, &request).await {
                Ok(()) => {
                    self.breakers.success(system, url);
                    return Ok(());
                }
                Err(e) if e.is_final() => return Err(e),
                Err(e) => e,
            };
            if self.breakers.failure(system, url, Instant::now()) {
                warn!(system = %esc(&event.system_id), error = %esc(&error), skipped_for = ?OPEN_FOR,
                    "webhook circuit breaker open: the system's events for its URL are skipped");
            }
            if attempt >= self.retries {
                return Err(error);
            }
            debug!(system = %esc(&event.system_id), error = %esc(&error), attempt,
                "webhook attempt failed");
            self.shared.stats.retry_one();
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// One POST: Ok on a 2xx answer within the timeout.
    async fn attempt(&self, url: &str, request: &Request) -> Result<(), Failure> {
        let started = Instant::now();
        let result = self.post(url, request).await;
        self.shared.stats.delivery_took(started.elapsed());
        result
    }

    async fn post(&self, url: &str, request: &Request) -> Result<(), Failure> {
        let deadline = Instant::now() + self.timeout;
        let mut post = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(request.body.clone());
        if let Some(signature) = &request.signature {
            post = post.header(sign::HEADER, signature);
        }
        let response = timeout_at(deadline, post.send())
            .await
            .map_err(|_| Failure::Timeout(self.timeout))??;
        let status = response.status();
        let _ = timeout_at(deadline, discard(response)).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Status(status))
        }
    }
}

/// The wait after failed attempt number `attempt` (0-based).
fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF)
}

/// Reads the answer's body (up to [`MAX_DISCARD`]) so that the connection
/// goes back to the pool; a larger body just costs that connection.
async fn discard(mut response: Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > MAX_DISCARD {
            return;
        }
    }
}

/// The thread's body: dispatches and serves the lanes until
/// [`WebhookThread::finish`] (then until nothing is held or the deadline) or
/// until the thread handle is dropped; then closes the channel, and what is
/// still held counts as dropped.
///
/// [`WebhookThread::finish`]: super::WebhookThread::finish
pub(super) fn run(
    runtime: Runtime,
    delivery: Delivery,
    mut events: mpsc::UnboundedReceiver<Event>,
    stop: oneshot::Receiver<Instant>,
) {
    let delivery = Rc::new(delivery);
    let tasks = LocalSet::new();
    tasks.block_on(&runtime, async {
        let dispatch = delivery.dispatch(&mut events);
        tokio::pin!(dispatch);
        let stopped = tokio::select! {
            () = &mut dispatch => None,
            stopped = stop => stopped.ok(),
        };
        if let Some(deadline) = stopped {
            tokio::select! {
                () = &mut dispatch => {}
                () = drain(&delivery, deadline) => {}
            }
        }
    });
    // The lanes are no longer run. Before the runtime stops: no submit may
    // queue an event that nobody will take, and every event sent before the
    // channel closed is counted (a send under way is waited for).
    events.close();
    let left = runtime.block_on(async {
        let mut left = 0;
        while events.recv().await.is_some() {
            left += 1;
        }
        left
    });
    delivery.lanes.abandon(left);
    {
        let _runtime = runtime.enter();
        drop(tasks);
    }
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
}

/// Waits until no event is held or `deadline` has passed.
async fn drain(delivery: &Delivery, deadline: Instant) {
    while delivery.shared.stats.queued() > 0 {
        tokio::select! {
            () = delivery.lanes.idle() => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_up_to_5s() {
        let waits: Vec<u64> = (0..8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
