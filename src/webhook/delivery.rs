//! The webhook thread: one sequential task per lane, each event tried once
//! and then up to `webhook.retries` more times with exponential backoff.
//!
//! Every attempt (connect, request, answer headers) is bounded by
//! `webhook.timeout`, so a hanging receiver costs a lane at most
//! `(retries + 1) * timeout` plus the backoff per event. Redirects are not
//! followed (a 3xx is a failed attempt), so events only ever go to the
//! configured address, and proxy variables are ignored for the same reason.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Response, StatusCode};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};
use tracing::{debug, warn};

use super::event::{EncodeError, Event};
use super::{sign, Shared};
use crate::config::WebhookConfig;

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

/// An encoded event, sent as is by every attempt.
struct Request {
    body: Bytes,
    signature: Option<String>,
}

impl Request {
    fn new(event: &Event) -> Result<Self, EncodeError> {
        let body = Bytes::from(event.body()?);
        let signature = event
            .endpoint
            .secret
            .as_deref()
            .map(|secret| sign::signature(secret, &body));
        Ok(Self { body, signature })
    }
}

pub(super) struct Delivery {
    client: Client,
    timeout: Duration,
    retries: u32,
    shared: Arc<Shared>,
}

impl Delivery {
    pub(super) fn new(client: Client, config: &WebhookConfig, shared: Arc<Shared>) -> Self {
        Self {
            client,
            timeout: config.timeout,
            retries: config.retries,
            shared,
        }
    }

    /// One lane: its events one after the other, in submission order.
    async fn serve(self: Arc<Self>, mut lane: mpsc::UnboundedReceiver<Event>) {
        while let Some(event) = lane.recv().await {
            self.deliver(&event).await;
            self.shared.release();
        }
    }

    async fn deliver(&self, event: &Event) {
        let stats = &self.shared.stats;
        match self.try_all(event).await {
            Ok(()) => stats.deliver_one(),
            Err(error) => {
                stats.drop_one();
                warn!(system = %event.system_id, client = %event.client_id, %error,
                    "webhook event dropped");
            }
        }
    }

    /// The first attempt and up to `retries` more, with backoff between.
    async fn try_all(&self, event: &Event) -> Result<(), Failure> {
        let request = Request::new(event)?;
        let mut attempt = 0;
        loop {
            let error = match self.attempt(&event.endpoint.url, &request).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_final() || attempt >= self.retries => return Err(e),
                Err(e) => e,
            };
            debug!(system = %event.system_id, %error, attempt, "webhook attempt failed");
            self.shared.stats.retry_one();
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// One POST: Ok on a 2xx answer within the timeout.
    async fn attempt(&self, url: &str, request: &Request) -> Result<(), Failure> {
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

/// The thread's body: serves the lanes until [`WebhookThread::finish`]
/// (then until nothing is held or the deadline) or until the thread handle
/// is dropped; what is still held then counts as dropped.
///
/// [`WebhookThread::finish`]: super::WebhookThread::finish
pub(super) fn run(
    runtime: Runtime,
    delivery: Delivery,
    lanes: Vec<mpsc::UnboundedReceiver<Event>>,
    stop: oneshot::Receiver<Instant>,
) {
    let delivery = Arc::new(delivery);
    let shared = Arc::clone(&delivery.shared);
    runtime.block_on(async {
        for lane in lanes {
            tokio::spawn(Arc::clone(&delivery).serve(lane));
        }
        if let Ok(deadline) = stop.await {
            drain(&shared, deadline).await;
        }
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    shared.stats.abandon();
}

/// Waits until no event is held or `deadline` has passed.
async fn drain(shared: &Shared, deadline: Instant) {
    while shared.stats.queued() > 0 {
        tokio::select! {
            () = shared.idle.notified() => {}
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
