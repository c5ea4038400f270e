//! What a core keeps so that a dropped connection can come back as itself
//! with what it missed (docs/api.md §8, §8.1), at a cost per message, not
//! per message × recipient.
//!
//! - `log`: every push and notice the core queued, once per fan-out, with
//!   whom it was addressed to;
//! - `place`: where each connection stands in the log — what it has shown
//!   it got, by answering a ping written after it;
//! - `session`: what one connection needs besides its place, only while it
//!   needs it (its own unacknowledged entries, audience changes, detached).
//!
//! A resume walks the entries after the connection's place that were
//! addressed to it — judged by its groups and user at the time of each
//! entry — and answers `recovered:true` only when the client's `last` is
//! among them (or is the newest frame it acknowledged) and nothing after
//! it was dropped.

pub mod log;
pub mod place;
pub mod session;

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use crate::op::ConnAddr;
use crate::ws::message::frame_message_id;
use crate::ws::{Last, Push};
use log::{Log, To};
use place::{Place, Places};
use session::{Session, What};

/// The core's log, the places of its connections, and its detached
/// connections, oldest first (`ws.max_detached`).
pub struct Replay {
    pub log: Log,
    pub places: Places,
    /// (connection, detached since); entries of connections that came back
    /// or ended are skipped when read.
    pub detached: VecDeque<(ConnAddr, Instant)>,
}

impl Replay {
    pub fn new(limit: usize) -> Self {
        Replay {
            log: Log::new(limit),
            places: Places::default(),
            detached: VecDeque::new(),
        }
    }
}

/// A connection as a replay judges whether an entry was addressed to it.
pub struct Member<'a> {
    pub addr: ConnAddr,
    pub system: &'a str,
    pub groups: &'a [Rc<str>],
    pub user: &'a str,
    pub session: Option<&'a Session>,
}

/// What a resume gets back.
pub struct Replayed {
    pub frames: Vec<Push>,
    /// Every push and notice addressed to the connection after `last` is
    /// in `frames`, in order, once.
    pub recovered: bool,
}

impl Member<'_> {
    fn addressed(&self, seq: u64, to: &To) -> bool {
        match to {
            To::Conn(a) => *a == self.addr,
            To::System(s) => **s == *self.system,
            To::Group(s, g) => **s == *self.system && self.in_group_at(seq, g),
            To::User(s, u) => **s == *self.system && self.user_at(seq) == &**u,
        }
    }

    /// Whether it was a member of `group` when the entry `seq` was appended:
    /// the first change of that group after the entry says what it was
    /// before; without one, what it is now.
    fn in_group_at(&self, seq: u64, group: &str) -> bool {
        for what in self.session.into_iter().flat_map(|s| s.changes_after(seq)) {
            match what {
                What::Joined(g) if **g == *group => return false,
                What::Left(g) if **g == *group => return true,
                _ => {}
            }
        }
        self.groups.iter().any(|g| **g == *group)
    }

    fn user_at(&self, seq: u64) -> &str {
        for what in self.session.into_iter().flat_map(|s| s.changes_after(seq)) {
            if let What::User(old) = what {
                return old;
            }
        }
        self.user
    }
}

/// The frames addressed to `member` after the one the client names `last`,
/// and whether that is all it missed.
pub fn replay(log: &Log, place: &Place, member: &Member<'_>, last: Last) -> Replayed {
    let seen: Vec<(u64, &Push)> = log
        .after(place.acked)
        .filter(|e| member.addressed(e.seq, e.to))
        .map(|e| (e.seq, e.frame))
        .collect();
    let acked_id = (place.acked_id != 0).then_some(place.acked_id);
    // Where the client's stream stands: (first frame to replay, seq after
    // which nothing may be lost), if `last` is a frame we can place.
    let from = match last {
        Last::Id(id) => match seen
            .iter()
            .rposition(|(_, f)| frame_message_id(&f.plain) == Some(id))
        {
            Some(i) => Some((i + 1, seen[i].0)),
            None => (acked_id == Some(id.0)).then_some((0, place.acked)),
        },
        Last::Nothing => acked_id.is_none().then_some((0, place.acked)),
        Last::Unreadable => None,
    };
    let (start, whole) = match from {
        Some((start, after)) => (start, log.lost_through() <= after),
        None => (0, false),
    };
    let rest = &seen[start..];
    // An emptied entry after the place: the session's own bound dropped it.
    let whole = whole && rest.iter().all(|(_, f)| !f.plain.is_empty());
    Replayed {
        frames: rest
            .iter()
            .filter(|(_, f)| !f.plain.is_empty())
            .map(|(_, f)| (*f).clone())
            .collect(),
        recovered: whole,
    }
}

#[cfg(test)]
mod tests;
