//! Webhooks: connection and message events POSTed to the business system
//! (docs/api.md §2.2).
//!
//! Cores run monoio and must never wait on a receiver that is down, slow or
//! hanging, so delivery lives on its own std thread ("shardcast-webhook")
//! with a current-thread tokio runtime, where reqwest (keep-alive pool,
//! https) can run. Cores only call [`Webhooks::submit`], which never blocks
//! on the network: it takes a short lock, checks the bounds and queues the
//! event.
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
//! Why the counts live under one lock: the node holds at most
//! `webhook.queue` events (queued or in delivery), and one system at most
//! half of that ([`share`]), so that a system whose receiver fails or hangs
//! cannot fill the queue and starve the others. Over either bound, `submit`
//! refuses and the event is counted as dropped with its reason. The same lock
//! guards the lanes, so that a lane's task removing its empty lane and a
//! submitter adding to it cannot miss each other (one task per lane, never
//! two). Everything under it is bounded by the held events.
//!
//! Circuit breakers (see `breaker`) skip a URL that failed 5 times in a row
//! for 10 s: its events are dropped at once instead of each costing its
//! retries.
//!
//! Shutdown: [`WebhookThread::finish`] lets the lanes go on until nothing is
//! held or the deadline passes, then stops the runtime; what is still held
//! then counts as dropped (reason `shutdown`). Events submitted before
//! `finish` (the `shutdown` disconnects) are already held, so they are
//! waited for.

mod breaker;
mod delivery;
mod event;
mod sign;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::WebhookConfig;
use delivery::Delivery;
pub use event::{Endpoint, Event, EventKind};
pub use stats::{DropReason, WebhookStats};

/// Sequential delivery lanes per system; a connection's events all go to
/// one of them.
const LANES: usize = 32;

/// `submit` refused the event; it was counted as dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("webhook queue is full")]
    QueueFull,
    #[error("the system holds its share of the webhook queue")]
    SystemShare,
    #[error("webhook delivery has stopped")]
    Stopped,
}

impl Refused {
    fn reason(self) -> DropReason {
        match self {
            Self::QueueFull => DropReason::QueueFull,
            Self::SystemShare => DropReason::SystemShare,
            Self::Stopped => DropReason::Shutdown,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot start the webhook runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the webhook thread: {0}")]
    Thread(std::io::Error),
}

/// A lane: a system and a slot of [`LANES`].
type LaneKey = (Arc<str>, usize);

/// The events held and where they wait, under [`Shared::state`].
#[derive(Default)]
struct State {
    /// The thread has stopped: nothing is accepted any more.
    stopped: bool,
    /// Events held (queued or in delivery).
    held: u64,
    /// Events held per system; a system with none has no entry.
    per_system: HashMap<Arc<str>, u64>,
    /// The queued events of each lane; a lane exists while its task runs.
    lanes: HashMap<LaneKey, VecDeque<Event>>,
}

/// State shared by the submitters and the webhook thread.
struct Shared {
    state: Mutex<State>,
    /// `webhook.queue`.
    limit: u64,
    /// The most one system may hold: [`share`] of `limit`.
    share: u64,
    stats: WebhookStats,
    /// New lanes, for the webhook thread to start their tasks.
    new_lanes: mpsc::UnboundedSender<LaneKey>,
    /// Signalled when the last held event is released (for `finish`).
    idle: Notify,
}

/// Half of the queue, rounded up (so that a queue of 1 still takes one).
fn share(limit: u64) -> u64 {
    limit.div_ceil(2)
}

impl Shared {
    /// Nothing under the lock is left half-updated by a panic (no code
    /// between a change and its counterpart can panic), so a poisoned lock
    /// is still consistent.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for `event` and queues it on its lane; the new lane's
    /// key when the lane had to be created.
    fn hold(&self, event: Event) -> Result<Option<LaneKey>, Refused> {
        let mut state = self.state();
        if state.stopped {
            return Err(Refused::Stopped);
        }
        if state.held >= self.limit {
            return Err(Refused::QueueFull);
        }
        let system: Arc<str> = Arc::from(event.system_id.as_str());
        let of_system = state.per_system.entry(Arc::clone(&system)).or_insert(0);
        if *of_system >= self.share {
            return Err(Refused::SystemShare);
        }
        *of_system += 1;
        state.held += 1;
        self.stats.set_queued(state.held);
        let key = (system, lane_of(&event.client_id));
        match state.lanes.get_mut(&key) {
            Some(lane) => {
                lane.push_back(event);
                Ok(None)
            }
            None => {
                state.lanes.insert(key.clone(), VecDeque::from([event]));
                Ok(Some(key))
            }
        }
    }

    /// The next event of lane `key`, or None after removing the lane when
    /// it is empty (its task then ends).
    fn next(&self, key: &LaneKey) -> Option<Event> {
        let mut state = self.state();
        let event = state.lanes.get_mut(key).and_then(VecDeque::pop_front);
        if event.is_none() {
            state.lanes.remove(key);
        }
        event
    }

    /// An event of `system` has been delivered or dropped: its place is
    /// free.
    fn release(&self, system: &str) {
        let mut state = self.state();
        if let Some(n) = state.per_system.get_mut(system) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_system.remove(system);
            }
        }
        state.held = state.held.saturating_sub(1);
        self.stats.set_queued(state.held);
        if state.held == 0 {
            self.idle.notify_one();
        }
    }

    /// The thread stops: nothing more is accepted, and whatever is still
    /// held (queued or in delivery) is lost.
    fn abandon(&self) {
        let mut state = self.state();
        state.stopped = true;
        self.stats.drop_some(DropReason::Shutdown, state.held);
        state.held = 0;
        state.per_system.clear();
        state.lanes.clear();
        self.stats.set_queued(0);
    }

    #[cfg(test)]
    fn lanes_and_systems(&self) -> (usize, usize) {
        let state = self.state();
        (state.lanes.len(), state.per_system.len())
    }
}

/// The cores' side: submits events. Send + Sync, cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
}

impl Webhooks {
    /// Never waits on the network. Refused (and counted as dropped) when
    /// `webhook.queue` events are held already, when the event's system
    /// holds its share (half of the queue), or after the thread has
    /// stopped.
    pub fn submit(&self, event: Event) -> Result<(), Refused> {
        let shared = &self.shared;
        match shared.hold(event) {
            Ok(None) => Ok(()),
            Ok(Some(key)) => {
                // Err: the thread is gone; it wrote the lane off (abandon).
                let _ = shared.new_lanes.send(key);
                Ok(())
            }
            Err(refused) => {
                shared.stats.drop_some(refused.reason(), 1);
                Err(refused)
            }
        }
    }

    pub fn stats(&self) -> &WebhookStats {
        &self.shared.stats
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
    let (new_lanes, lanes) = mpsc::unbounded_channel();
    let limit = config.queue as u64;
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        limit,
        share: share(limit),
        stats: WebhookStats::default(),
        new_lanes,
        idle: Notify::new(),
    });
    let delivery = Delivery::new(client, config, Arc::clone(&shared));
    let (stop, stopped) = oneshot::channel();
    let thread = thread::Builder::new()
        .name("shardcast-webhook".into())
        .spawn(move || delivery::run(runtime, delivery, lanes, stopped))
        .map_err(WebhookError::Thread)?;
    Ok((Webhooks { shared }, WebhookThread { stop, thread }))
}
