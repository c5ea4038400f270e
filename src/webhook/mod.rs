//! Webhooks: connection and message events POSTed to the business system
//! (docs/api.md §2.2).
//!
//! Cores run monoio and must never wait on a receiver that is down, slow or
//! hanging, so delivery lives on its own std thread ("shardcast-webhook")
//! with a current-thread tokio runtime, where reqwest (keep-alive pool,
//! https) can run. Cores only call [`Webhooks::submit`], which never blocks:
//! it checks a counter and puts the event on an unbounded channel.
//!
//! Why lanes: events must reach the receiver in order per connection (a
//! `disconnect` never before its `connect`), yet one slow connection must not
//! hold up all the others. Events are spread over [`LANES`] sequential tasks
//! by a hash of the clientId: one connection always uses the same lane, so
//! its events never overtake each other, while different lanes deliver
//! concurrently over one shared connection pool. A lane waits out an event's
//! retries before its next event; that is the price of the ordering, and it
//! is bounded by `webhook.timeout` and `webhook.retries`.
//!
//! Why one counter bounds everything: the channels are unbounded so that
//! `submit` never waits, and the memory bound is instead an atomic count of
//! the events held (queued or in delivery), at most `webhook.queue`. Over it,
//! `submit` refuses with [`QueueFull`] and the event counts as dropped, like
//! an event whose retries are spent.
//!
//! Shutdown: [`WebhookThread::finish`] lets the lanes go on until nothing is
//! held or the deadline passes, then stops the runtime; what is still held
//! then counts as dropped. Events submitted before `finish` (the `shutdown`
//! disconnects) are already counted, so they are waited for.

mod delivery;
mod event;
mod sign;
mod stats;
#[cfg(test)]
mod tests;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::WebhookConfig;
use delivery::Delivery;
pub use event::{Endpoint, Event, EventKind};
pub use stats::WebhookStats;

/// Sequential delivery tasks; a connection's events all go to one of them.
const LANES: usize = 32;

/// `submit` refused the event: `webhook.queue` events are held already (or
/// the webhook thread has stopped). The event was counted as dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("webhook queue is full")]
pub struct QueueFull;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot start the webhook runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the webhook thread: {0}")]
    Thread(std::io::Error),
}

/// State shared by the submitters and the webhook thread.
struct Shared {
    lanes: Vec<mpsc::UnboundedSender<Event>>,
    limit: u64,
    stats: WebhookStats,
    /// Signalled when the last held event is released (for `finish`).
    idle: Notify,
}

impl Shared {
    /// An event has been delivered or dropped.
    fn release(&self) {
        if self.stats.release() {
            self.idle.notify_one();
        }
    }
}

/// The cores' side: submits events. Send + Sync, cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
}

impl Webhooks {
    /// Never blocks. Err(QueueFull) when `webhook.queue` events are already
    /// held (queued or in delivery), or after the thread has stopped; the
    /// drop is counted.
    pub fn submit(&self, event: Event) -> Result<(), QueueFull> {
        let stats = &self.shared.stats;
        if !stats.try_hold(self.shared.limit) {
            stats.drop_one();
            return Err(QueueFull);
        }
        let lane = &self.shared.lanes[lane_of(&event.client_id)];
        if lane.send(event).is_err() {
            self.shared.release();
            stats.drop_one();
            return Err(QueueFull);
        }
        Ok(())
    }

    pub fn stats(&self) -> &WebhookStats {
        &self.shared.stats
    }
}

/// The lane of a connection: the same clientId, the same lane.
fn lane_of(client_id: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    client_id.hash(&mut hasher);
    (hasher.finish() % LANES as u64) as usize
}

/// Owner of the webhook thread. Dropping it without [`finish`] stops
/// delivery at once (what is held counts as dropped) and detaches the thread.
///
/// [`finish`]: WebhookThread::finish
pub struct WebhookThread {
    stop: oneshot::Sender<tokio::time::Instant>,
    thread: thread::JoinHandle<()>,
}

impl WebhookThread {
    /// Shutdown: keeps delivering what is queued (including events submitted
    /// until now) and returns when everything held has been delivered or
    /// dropped, or when `within` has passed — whichever is first (plus at
    /// most ~200 ms to stop the runtime). Then stops the thread. Blocking:
    /// call it from a plain thread, not from inside an async runtime.
    pub fn finish(self, within: Duration) {
        let deadline = tokio::time::Instant::from_std(Instant::now() + within);
        // Err: the thread is already gone; joining tells nothing more.
        let _ = self.stop.send(deadline);
        let _ = self.thread.join();
    }
}

/// Spawns the side thread ("shardcast-webhook") running a tokio
/// current-thread runtime. Call it from a plain thread (it builds that
/// runtime here). `config.url` is not used here: callers put the URL of
/// each event in its [`Endpoint`].
pub fn start(config: &WebhookConfig) -> Result<(Webhooks, WebhookThread), WebhookError> {
    let client = delivery::client()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(WebhookError::Runtime)?;
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..LANES).map(|_| mpsc::unbounded_channel()).unzip();
    let shared = Arc::new(Shared {
        lanes: senders,
        limit: config.queue as u64,
        stats: WebhookStats::default(),
        idle: Notify::new(),
    });
    let delivery = Delivery::new(client, config, Arc::clone(&shared));
    let (stop, stopped) = oneshot::channel();
    let thread = thread::Builder::new()
        .name("shardcast-webhook".into())
        .spawn(move || delivery::run(runtime, delivery, receivers, stopped))
        .map_err(WebhookError::Thread)?;
    Ok((Webhooks { shared }, WebhookThread { stop, thread }))
}
