//! Webhooks: connection and message events POSTed to the business system
//! (docs/api.md §2.2).
//!
//! Cores run monoio and must never wait on a receiver that is down, slow or
//! hanging, so delivery lives on its own std thread ("shardcast-webhook")
//! with a current-thread tokio runtime, where reqwest (keep-alive pool,
//! https) can run. Cores only call [`Webhooks::submit`], which never blocks
//! and shares nothing with the other cores but one atomic counter and a
//! channel: it takes a place under the global bound and sends the event to
//! the webhook thread.
//!
//! Why lanes per system: events must reach the receiver in order per
//! connection (a `disconnect` never before its `connect`), yet one slow
//! connection must not hold up all the others, and one system's hung
//! receiver must not hold up any other system. A lane is a FIFO of events
//! keyed by (systemId, hash of the clientId modulo [`LANES`]), served by one
//! sequential task: one connection always uses the same lane, so its events
//! never overtake each other, while lanes deliver concurrently over one
//! shared connection pool. A lane waits out an event's retries before its
//! next event (the price of the order), so a hung receiver blocks only the
//! lanes of its own system. Lanes are created when an event arrives for
//! them and removed when they run empty, so an idle system costs nothing.
//!
//! Why two bounds in two places: the node holds at most `webhook.queue`
//! events (in the channel, queued on a lane or in delivery), and one system
//! at most half of that ([`share`]), so that a system whose receiver fails or
//! hangs cannot fill the queue and starve the others. The global bound is an
//! atomic count that `submit` takes (over it: refused, dropped as
//! `queue_full`) and the webhook thread gives back. Everything per system
//! (the share, the lanes, the breakers) is the webhook thread's own, with no
//! lock: a core owns its data and others send it messages, and a lock every
//! core takes for every event would be shared on a message path. The
//! thread's dispatcher takes each event from the channel in submission
//! order, drops it when its system holds its share already (reason
//! `system_share`, its place given back) and otherwise queues it on its
//! lane. Since the thread is single and its tasks touch that state only
//! between awaits, a lane running empty and an event arriving for it can
//! never miss each other (one task per lane, never two). Everything there is
//! bounded by the held events.
//!
//! Circuit breakers (see `breaker`), one per (system, URL), skip a system's
//! URL that failed 5 times in a row for it for 10 s: that system's events
//! for it are dropped at once instead of each costing its retries, while
//! other systems of the same URL go on being tried.
//!
//! Shutdown: [`WebhookThread::finish`] lets the lanes go on until nothing is
//! held or the deadline passes, then closes the channel (`submit` is refused
//! from then on, reason `shutdown`) and stops the runtime; what is still
//! held then counts as dropped (reason `shutdown`). Events submitted before
//! `finish` (the `shutdown` disconnects) are already held, so they are
//! waited for.

mod breaker;
mod delivery;
mod event;
mod lanes;
mod sign;
mod stats;
#[cfg(test)]
mod tests;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::WebhookConfig;
use delivery::Delivery;
pub use event::{Endpoint, Event, EventKind};
pub use stats::{DropReason, WebhookStats};

/// Sequential delivery lanes per system; a connection's events all go to
/// one of them.
const LANES: usize = 32;

/// `submit` refused the event; it was counted as dropped. (An event over
/// its system's share is accepted here and dropped by the webhook thread.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("webhook queue is full")]
    QueueFull,
    #[error("webhook delivery has stopped")]
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    // The causes are in the messages, so they are no `source()` (printed
    // whole, a chain would say them twice).
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("cannot start the webhook runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the webhook thread: {0}")]
    Thread(std::io::Error),
}

/// A lane: a system and a slot of [`LANES`].
type LaneKey = (Arc<str>, usize);

/// What the cores and the webhook thread share: the bound and the counters.
struct Shared {
    /// `webhook.queue`.
    limit: u64,
    /// Its `queued` is the global count of held events.
    stats: WebhookStats,
    /// Lanes and systems with held events on the webhook thread, published
    /// for tests.
    #[cfg(test)]
    census: lanes::Census,
}

/// Half of the queue, rounded up (so that a queue of 1 still takes one).
fn share(limit: u64) -> u64 {
    limit.div_ceil(2)
}

/// The cores' side: submits events. Send + Sync, cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
    /// To the webhook thread's dispatcher.
    events: mpsc::UnboundedSender<Event>,
}

impl Webhooks {
    /// Never waits and takes no lock: takes a place under `webhook.queue`
    /// (one atomic count) and sends the event to the webhook thread.
    /// Refused (and counted as dropped) when `webhook.queue` events are held
    /// already, or after the thread has stopped. An event over its system's
    /// share is accepted here and dropped by the thread (reason
    /// `system_share`).
    pub fn submit(&self, event: Event) -> Result<(), Refused> {
        let stats = &self.shared.stats;
        if !stats.try_hold(self.shared.limit) {
            stats.drop_some(DropReason::QueueFull, 1);
            return Err(Refused::QueueFull);
        }
        if self.events.send(event).is_err() {
            // The thread has closed the channel: nobody will take it.
            stats.release(1);
            stats.drop_some(DropReason::Shutdown, 1);
            return Err(Refused::Stopped);
        }
        Ok(())
    }

    pub fn stats(&self) -> &WebhookStats {
        &self.shared.stats
    }

    /// (lanes, systems with held events) on the webhook thread.
    #[cfg(test)]
    fn lanes_and_systems(&self) -> (usize, usize) {
        self.shared.census.get()
    }
}

/// The lane slot of a connection: the same clientId, the same slot.
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
    /// most `delivery::RUNTIME_SHUTDOWN` to stop the runtime). Then stops the thread. Blocking:
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
    let client = delivery::client().map_err(WebhookError::Client)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(WebhookError::Runtime)?;
    let (events, received) = mpsc::unbounded_channel();
    let limit = config.queue as u64;
    let shared = Arc::new(Shared {
        limit,
        stats: WebhookStats::default(),
        #[cfg(test)]
        census: lanes::Census::default(),
    });
    let delivery = Delivery::new(client, config, Arc::clone(&shared), share(limit));
    let (stop, stopped) = oneshot::channel();
    let thread = thread::Builder::new()
        .name("shardcast-webhook".into())
        .spawn(move || delivery::run(runtime, delivery, received, stopped))
        .map_err(WebhookError::Thread)?;
    Ok((Webhooks { shared, events }, WebhookThread { stop, thread }))
}
