//! What a connection needs of the replay log beyond its place: the entries
//! addressed to it alone that it has not acknowledged, the group and user
//! changes made since its place (a push to a group it had left is not
//! replayed, one sent before it left is), and whether it is detached.
//!
//! A connection has a session only while it has something of this kind:
//! one that has acknowledged everything, kept its groups and is attached
//! has none (`is_spent`), so it costs what it costs with resume off.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use crate::ws::CloseReason;

/// A change of a connection's audience, after the entries up to `seq`.
pub struct Change {
    pub seq: u64,
    pub what: What,
}

pub enum What {
    Joined(Rc<str>),
    Left(Rc<str>),
    /// The userId changed; this was the old one.
    User(Rc<str>),
}

#[derive(Default)]
pub struct Session {
    /// Entries addressed to this connection alone, not acknowledged yet:
    /// (seq, frame bytes), oldest first.
    own: VecDeque<(u64, usize)>,
    own_bytes: usize,
    /// A ping asking for the acknowledgement of its own frames is out.
    asked: bool,
    changes: Vec<Change>,
    /// Detached: since when, and why the connection dropped (the reason
    /// its disconnect is reported with if it does not come back).
    pub detached: Option<(Instant, CloseReason)>,
}

impl Session {
    /// Notes an entry addressed to this connection alone; returns the seqs
    /// of the oldest ones past `limit`, which the caller empties in the log
    /// (lost to this session: a resume after them is not recovered).
    pub fn own(&mut self, seq: u64, len: usize, limit: usize) -> Vec<u64> {
        self.own.push_back((seq, len));
        self.own_bytes += len;
        let mut over = Vec::new();
        while self.own_bytes > limit {
            let Some((old, n)) = self.own.pop_front() else {
                break;
            };
            self.own_bytes -= n;
            over.push(old);
        }
        over
    }

    /// Whether to ask for an acknowledgement now: its own frames pass
    /// `threshold` and no ask is out (the next `ack` ends it).
    pub fn ask_for_ack(&mut self, threshold: usize) -> bool {
        let ask = self.own_bytes > threshold && !self.asked;
        self.asked |= ask;
        ask
    }

    /// Notes a change of audience made after the entries up to `seq`.
    pub fn change(&mut self, seq: u64, what: What) {
        self.changes.push(Change { seq, what });
    }

    /// The connection acknowledged every entry up to `seq`: returns the
    /// seqs of its own entries the log can empty, and forgets the changes
    /// that no entry after `seq` depends on.
    pub fn ack(&mut self, seq: u64) -> Vec<u64> {
        self.asked = false;
        let mut done = Vec::new();
        while let Some(&(s, n)) = self.own.front().filter(|(s, _)| *s <= seq) {
            self.own.pop_front();
            self.own_bytes -= n;
            done.push(s);
        }
        self.changes.retain(|c| c.seq > seq);
        done
    }

    /// Changes made after the entry `seq`, oldest first.
    pub fn changes_after(&self, seq: u64) -> impl Iterator<Item = &What> + '_ {
        self.changes
            .iter()
            .filter(move |c| c.seq >= seq)
            .map(|c| &c.what)
    }

    /// Nothing left that a connection without a session would not have.
    pub fn is_spent(&self) -> bool {
        self.own.is_empty() && self.changes.is_empty() && self.detached.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_entries_are_bounded_oldest_first_and_acked_in_order() {
        let mut s = Session::default();
        assert!(s.own(1, 100, 250).is_empty());
        assert!(s.own(2, 100, 250).is_empty());
        assert_eq!(s.own(4, 100, 250), [1], "past the bound");
        assert_eq!(s.ack(3), [2]);
        assert!(!s.is_spent());
        assert_eq!(s.ack(4), [4]);
        assert!(s.is_spent());
    }

    #[test]
    fn an_ack_is_asked_for_once_until_it_comes() {
        let mut s = Session::default();
        s.own(1, 100, 1000);
        assert!(!s.ask_for_ack(150), "under the threshold");
        s.own(2, 100, 1000);
        assert!(s.ask_for_ack(150));
        s.own(3, 100, 1000);
        assert!(!s.ask_for_ack(150), "one ask out at a time");
        s.ack(3);
        s.own(4, 200, 1000);
        assert!(s.ask_for_ack(150), "asked again after the ack");
    }

    #[test]
    fn changes_are_kept_until_no_entry_depends_on_them() {
        let mut s = Session::default();
        s.change(5, What::Joined(Rc::from("g")));
        s.change(7, What::Left(Rc::from("g")));
        assert_eq!(s.changes_after(6).count(), 1);
        assert_eq!(s.changes_after(5).count(), 2);
        s.ack(5);
        assert_eq!(s.changes_after(0).count(), 1);
        s.ack(7);
        assert!(s.is_spent());
    }
}
