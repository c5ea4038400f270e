//! The webhook thread's own state: the events each system holds and the
//! queued events of each lane. Only that thread's tasks (the dispatcher and
//! the lanes, on one `LocalSet`) touch it, never across an await, so a
//! `RefCell` is all it needs: no lock, nothing shared with the cores.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::Notify;

use super::{lane_of, DropReason, Event, LaneKey, Shared};

#[derive(Default)]
struct State {
    /// Events held per system, taken from the channel and not yet delivered
    /// or dropped; a system with none has no entry.
    per_system: HashMap<Arc<str>, u64>,
    /// The queued events of each lane; a lane exists while its task runs.
    lanes: HashMap<LaneKey, VecDeque<Event>>,
}

pub(super) struct Lanes {
    state: RefCell<State>,
    /// The most one system may hold.
    share: u64,
    shared: Arc<Shared>,
    /// Signalled when the last held event is released (for `finish`).
    idle: Notify,
}

impl Lanes {
    pub(super) fn new(shared: Arc<Shared>, share: u64) -> Self {
        Self {
            state: RefCell::default(),
            share,
            shared,
            idle: Notify::new(),
        }
    }

    /// An event taken from the channel (its place under the global bound is
    /// already taken): dropped when its system holds its share, else queued
    /// on its lane. The lane's key when the lane had to be created (its task
    /// is to be started).
    pub(super) fn admit(&self, event: Event) -> Option<LaneKey> {
        let mut state = self.state.borrow_mut();
        let system: Arc<str> = Arc::from(event.system_id.as_str());
        let held = state.per_system.get(&system).copied().unwrap_or(0);
        if held >= self.share {
            drop(state);
            self.shared.stats.drop_some(DropReason::SystemShare, 1);
            self.give_back(1);
            return None;
        }
        state.per_system.insert(Arc::clone(&system), held + 1);
        let key = (system, lane_of(&event.client_id));
        let new = match state.lanes.get_mut(&key) {
            Some(lane) => {
                lane.push_back(event);
                None
            }
            None => {
                state.lanes.insert(key.clone(), VecDeque::from([event]));
                Some(key)
            }
        };
        self.publish(&state);
        new
    }

    /// The next event of lane `key`, or None after removing the lane when
    /// it is empty (its task then ends).
    pub(super) fn next(&self, key: &LaneKey) -> Option<Event> {
        let mut state = self.state.borrow_mut();
        let event = state.lanes.get_mut(key).and_then(VecDeque::pop_front);
        if event.is_none() {
            state.lanes.remove(key);
            self.publish(&state);
        }
        event
    }

    /// An event of `system` has been delivered or dropped: its place is
    /// free.
    pub(super) fn done(&self, system: &str) {
        let mut state = self.state.borrow_mut();
        if let Some(n) = state.per_system.get_mut(system) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_system.remove(system);
            }
        }
        self.publish(&state);
        drop(state);
        self.give_back(1);
    }

    /// The thread stops and its tasks are no longer run: the `left` events
    /// still in the (closed) channel and those taken from it and not done
    /// are lost.
    pub(super) fn abandon(&self, left: u64) {
        let mut state = self.state.borrow_mut();
        let lost = left + state.per_system.values().sum::<u64>();
        state.per_system.clear();
        state.lanes.clear();
        self.publish(&state);
        drop(state);
        self.shared.stats.drop_some(DropReason::Shutdown, lost);
        self.give_back(lost);
    }

    /// Waits until the last held event is given back (or a spurious wake).
    pub(super) async fn idle(&self) {
        self.idle.notified().await;
    }

    fn give_back(&self, n: u64) {
        if self.shared.stats.release(n) {
            self.idle.notify_one();
        }
    }

    #[cfg(test)]
    fn publish(&self, state: &State) {
        self.shared
            .census
            .set(state.lanes.len(), state.per_system.len());
    }

    #[cfg(not(test))]
    fn publish(&self, _: &State) {}
}

/// Lanes and systems with held events, as last published by the webhook
/// thread (tests only).
#[cfg(test)]
#[derive(Default)]
pub(super) struct Census {
    lanes: std::sync::atomic::AtomicUsize,
    systems: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl Census {
    fn set(&self, lanes: usize, systems: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.lanes.store(lanes, Relaxed);
        self.systems.store(systems, Relaxed);
    }

    pub(super) fn get(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.lanes.load(Relaxed), self.systems.load(Relaxed))
    }
}
