//! The per-core replay log: every push and notice a core queued to its
//! connections, once per fan-out whatever its audience (docs/api.md §8.1).
//!
//! An entry is the fan-out's shared push (both its forms, `ws::Push`) and whom it was addressed to —
//! a system, a group, a user, or one connection — never a copy or a list
//! per recipient. Entries are numbered by the core (`seq`, from 1), so a
//! connection's place in the stream is one number (`place`). Entries leave
//! from the front: once every connection of the core has shown it got them
//! (`prune_through`), or when the core's share of `ws.resume_max_bytes` is
//! passed (then `lost_through` says how far the bound reached, so that a
//! resume needing those entries answers `recovered:false`). An entry
//! addressed to one connection alone is emptied (`hollow`) as soon as that
//! connection acknowledges it, so a large `send_to_client` does not wait
//! for the slowest connection of the core.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::ws::Push;

use crate::op::ConnAddr;

/// Whom an entry was addressed to.
#[derive(Clone, Debug)]
pub enum To {
    /// Every connection of a system.
    System(Rc<str>),
    /// The members of (system, group) when the entry was appended.
    Group(Rc<str>, Rc<str>),
    /// The connections of (system, userId) when the entry was appended.
    User(Rc<str>, Rc<str>),
    /// One connection.
    Conn(ConnAddr),
}

struct Entry {
    to: To,
    /// Empty once hollowed.
    frame: Push,
}

/// What one entry costs besides its frame.
pub const ENTRY_COST: usize = std::mem::size_of::<Entry>();

pub struct Log {
    entries: VecDeque<Entry>,
    /// The seq of `entries[0]` (of the next entry when empty).
    first: u64,
    /// Frame bytes and entry costs held.
    bytes: usize,
    /// This core's share of `ws.resume_max_bytes`.
    limit: usize,
    /// The newest seq dropped by the bound (0: none).
    lost_through: u64,
}

/// One entry as a replay reads it.
pub struct Seen<'a> {
    pub seq: u64,
    pub to: &'a To,
    /// Empty when the entry was hollowed.
    pub frame: &'a Push,
}

impl Log {
    pub fn new(limit: usize) -> Self {
        Log {
            entries: VecDeque::new(),
            first: 1,
            bytes: 0,
            limit,
            lost_through: 0,
        }
    }

    /// The seq of the newest entry (0 before the first).
    pub fn head(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// Bytes held (frames and entries).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The newest seq the node-wide bound dropped (0: none).
    pub fn lost_through(&self) -> u64 {
        self.lost_through
    }

    /// Appends `frame` for `to`; returns its seq and how many entries the
    /// bound dropped to make room.
    pub fn append(&mut self, to: To, frame: Push) -> (u64, usize) {
        self.bytes += frame.held() + ENTRY_COST;
        self.entries.push_back(Entry { to, frame });
        let mut dropped = 0;
        while self.bytes > self.limit && self.entries.len() > 1 {
            self.lost_through = self.first;
            self.pop_front();
            dropped += 1;
        }
        (self.head(), dropped)
    }

    /// Empties the entry `seq` (one connection's frame it acknowledged, or
    /// one its own bound dropped); returns the bytes given back.
    pub fn hollow(&mut self, seq: u64) -> usize {
        let Some(e) = self.index(seq).and_then(|i| self.entries.get_mut(i)) else {
            return 0;
        };
        let freed = std::mem::take(&mut e.frame).held();
        self.bytes -= freed;
        freed
    }

    /// Drops every entry up to and including `seq`: nobody needs them.
    pub fn prune_through(&mut self, seq: u64) {
        while self.first <= seq && !self.entries.is_empty() {
            self.pop_front();
        }
    }

    /// The entries after `seq`, oldest first.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = Seen<'_>> + '_ {
        let skip = seq.saturating_add(1).saturating_sub(self.first);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let first = self.first;
        self.entries
            .iter()
            .enumerate()
            .skip(skip)
            .map(move |(i, e)| Seen {
                seq: first + i as u64,
                to: &e.to,
                frame: &e.frame,
            })
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        (i < self.entries.len()).then_some(i)
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.frame.held() + ENTRY_COST;
            self.first += 1;
        }
        if self.entries.is_empty() {
            self.entries = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sys() -> To {
        To::System(Rc::from("s"))
    }

    fn seqs(log: &Log, after: u64) -> Vec<u64> {
        log.after(after).map(|s| s.seq).collect()
    }

    #[test]
    fn entries_are_numbered_from_one_and_read_after_a_seq() {
        let mut log = Log::new(1 << 20);
        assert_eq!(log.head(), 0);
        for n in 1..=4 {
            assert_eq!(
                log.append(sys(), Push::plain(Bytes::from_static(b"x"))),
                (n, 0)
            );
        }
        assert_eq!(seqs(&log, 0), [1, 2, 3, 4]);
        assert_eq!(seqs(&log, 2), [3, 4]);
        assert!(seqs(&log, 4).is_empty());
        log.prune_through(2);
        assert_eq!(seqs(&log, 0), [3, 4]);
        assert_eq!(log.head(), 4);
        log.prune_through(9);
        assert_eq!(log.head(), 4, "seqs go on after the log empties");
        assert_eq!(log.bytes(), 0);
        assert_eq!(log.lost_through(), 0, "pruned, not lost");
    }

    #[test]
    fn the_bound_drops_the_oldest_and_remembers_how_far() {
        let frame = Push::plain(Bytes::from(vec![0; 100]));
        let one = 100 + ENTRY_COST;
        let mut log = Log::new(3 * one);
        for _ in 0..3 {
            assert_eq!(log.append(sys(), frame.clone()).1, 0);
        }
        assert_eq!(log.append(sys(), frame.clone()), (4, 1));
        assert_eq!(log.lost_through(), 1);
        assert_eq!(seqs(&log, 0), [2, 3, 4]);
        assert!(log.bytes() <= 3 * one);
    }

    #[test]
    fn hollowing_gives_back_the_frame_and_keeps_the_place() {
        let mut log = Log::new(1 << 20);
        let addr = ConnAddr { slot: 1, gen: 0 };
        log.append(To::Conn(addr), Push::plain(Bytes::from(vec![0; 60_000])));
        log.append(sys(), Push::plain(Bytes::from_static(b"y")));
        assert_eq!(log.hollow(1), 60_000);
        assert_eq!(log.hollow(1), 0);
        assert_eq!(log.hollow(7), 0, "not in the log");
        assert!(log.bytes() < 1_000);
        let frames: Vec<usize> = log.after(0).map(|s| s.frame.plain.len()).collect();
        assert_eq!(frames, [0, 1]);
    }
}
