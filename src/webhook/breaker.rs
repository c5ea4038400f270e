//! Circuit breakers, one per (system, webhook URL).
//!
//! Why: a receiver that is down or hung makes every event for it cost
//! `(retries + 1) × timeout`, which its lanes (and its share of the queue)
//! pay one event after the other while nothing gets through. After
//! [`FAILURES`] failed attempts in a row for one system to one URL, the
//! breaker opens: for [`OPEN_FOR`] that system's events for that URL are
//! not tried but dropped at once (reason `circuit_open`), freeing their
//! places. After that, attempts go out again: one success closes the
//! breaker, one more failure opens it for another [`OPEN_FOR`].
//!
//! Why per system and not per URL: systems may share a receiver, which may
//! refuse one system's events (a 403 for a tenant it does not know) and take
//! another's. A breaker per URL let the refused system open it for every
//! system of that URL, and the others' events were dropped unsent. A
//! receiver that is down for all costs each of its systems [`FAILURES`]
//! attempts before their breakers open.
//!
//! Bound: a (system, URL) pair has an entry only while its last attempt
//! failed (a success removes it), and URLs come from the configuration and
//! registered systems (one URL per system at a time), never from a client.
//! Past [`TRACKED`] entries, those not open are forgotten, so the map cannot
//! grow with the pairs the node has seen: what stays beyond it is open, and
//! only for [`OPEN_FOR`].
//!
//! Only the webhook thread's lanes use them (the cores never look at a
//! breaker: an event for an open breaker is accepted and dropped there), one
//! task at a time and never across an await, so a `RefCell` holds them.

use std::cell::{RefCell, RefMut};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use hashbrown::{Equivalent, HashMap};
use tokio::time::Instant;

/// Failed attempts in a row that open a breaker.
pub(super) const FAILURES: u32 = 5;
/// How long an open breaker skips its system's events for its URL.
pub(super) const OPEN_FOR: Duration = Duration::from_secs(10);
/// Entries kept before the closed ones are forgotten.
const TRACKED: usize = 1024;

#[derive(Debug, Default)]
struct Breaker {
    /// Failed attempts in a row.
    failures: u32,
    /// Skipped until then (when it is in the future).
    open_until: Option<Instant>,
}

impl Breaker {
    fn is_open(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }
}

/// What a breaker is kept under: (system, URL).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    system: Box<str>,
    url: Box<str>,
}

/// A (system, URL) looked up without copying it. Hashes as [`Key`] does
/// (derived: its fields in order, a `Box<str>` as its `str`).
#[derive(Clone, Copy)]
struct Pair<'a>(&'a str, &'a str);

impl From<&Pair<'_>> for Key {
    fn from(pair: &Pair<'_>) -> Self {
        Key {
            system: pair.0.into(),
            url: pair.1.into(),
        }
    }
}

impl Hash for Pair<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<Key> for Pair<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *key.system == *self.0 && *key.url == *self.1
    }
}

/// The breakers of the (system, URL) pairs whose last attempt failed.
#[derive(Debug, Default)]
pub(super) struct Breakers {
    pairs: RefCell<HashMap<Key, Breaker>>,
}

impl Breakers {
    /// Borrowed only within one call of the methods below.
    fn pairs(&self) -> RefMut<'_, HashMap<Key, Breaker>> {
        self.pairs.borrow_mut()
    }

    /// `system`'s events for `url` are skipped now.
    pub(super) fn is_open(&self, system: &str, url: &str, now: Instant) -> bool {
        self.pairs()
            .get(&Pair(system, url))
            .is_some_and(|b| b.is_open(now))
    }

    /// An attempt of `system` to `url` succeeded: its breaker closes.
    pub(super) fn success(&self, system: &str, url: &str) {
        self.pairs().remove(&Pair(system, url));
    }

    /// An attempt of `system` to `url` failed; true when that opened its
    /// breaker (it was not open). A failure while open (an attempt that
    /// started before) restarts the window.
    pub(super) fn failure(&self, system: &str, url: &str, now: Instant) -> bool {
        let key = Pair(system, url);
        let mut pairs = self.pairs();
        if pairs.len() >= TRACKED && !pairs.contains_key(&key) {
            pairs.retain(|_, b| b.is_open(now));
        }
        let breaker = pairs.entry_ref(&key).or_default();
        let was_open = breaker.is_open(now);
        breaker.failures = breaker.failures.saturating_add(1);
        if breaker.failures < FAILURES {
            return false;
        }
        breaker.open_until = Some(now + OPEN_FOR);
        !was_open
    }

    #[cfg(test)]
    pub(super) fn tracked(&self) -> usize {
        self.pairs().len()
    }
}
