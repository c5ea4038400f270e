//! Circuit breakers, one per webhook URL.
//!
//! Why: a receiver that is down or hung makes every event for it cost
//! `(retries + 1) × timeout`, which its lanes (and its share of the queue)
//! pay one event after the other while nothing gets through. After
//! [`FAILURES`] failed attempts in a row to one URL, the breaker opens: for
//! [`OPEN_FOR`] the URL is not tried, and its events are dropped at once
//! (reason `circuit_open`), freeing their places. After that, attempts go
//! out again: one success closes the breaker, one more failure opens it for
//! another [`OPEN_FOR`].
//!
//! Bound: a URL has an entry only while its last attempt failed (a success
//! removes it), and URLs come from the configuration and registered systems,
//! never from a client. Past [`TRACKED`] entries, those not open are
//! forgotten, so the map cannot grow with the URLs the node has seen.
//!
//! Only the webhook thread's lanes use them (the cores never look at a
//! breaker: an event for an open URL is accepted and dropped there), one
//! task at a time and never across an await, so a `RefCell` holds them.

use std::cell::{RefCell, RefMut};
use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Failed attempts in a row that open a breaker.
pub(super) const FAILURES: u32 = 5;
/// How long an open breaker skips its URL.
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

/// The breakers of the URLs whose last attempt failed.
#[derive(Debug, Default)]
pub(super) struct Breakers {
    urls: RefCell<HashMap<String, Breaker>>,
}

impl Breakers {
    /// Borrowed only within one call of the methods below.
    fn urls(&self) -> RefMut<'_, HashMap<String, Breaker>> {
        self.urls.borrow_mut()
    }

    /// `url` is skipped now.
    pub(super) fn is_open(&self, url: &str, now: Instant) -> bool {
        self.urls().get(url).is_some_and(|b| b.is_open(now))
    }

    /// An attempt to `url` succeeded: its breaker closes.
    pub(super) fn success(&self, url: &str) {
        self.urls().remove(url);
    }

    /// An attempt to `url` failed; true when that opened its breaker (it
    /// was not open). A failure while open (an attempt that started before)
    /// restarts the window.
    pub(super) fn failure(&self, url: &str, now: Instant) -> bool {
        let mut urls = self.urls();
        if urls.len() >= TRACKED && !urls.contains_key(url) {
            urls.retain(|_, b| b.is_open(now));
        }
        let breaker = urls.entry(url.to_owned()).or_default();
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
        self.urls().len()
    }
}
