//! One stream's history: its numbering and the pushes it keeps, newest
//! last, under its rule's `size` and `ttl`.

use std::collections::VecDeque;

use crate::op::{Ask, HandedPush, HandedStream, Position};
use crate::ws::Push;

/// One kept push.
pub struct Kept {
    pub offset: u64,
    /// Unix milliseconds when the owner stamped it.
    pub at_ms: u64,
    /// The frame every member got (both forms).
    pub push: Push,
}

/// What one kept push costs besides its frame.
pub const KEPT_COST: usize = std::mem::size_of::<Kept>();

impl Kept {
    fn cost(&self) -> usize {
        self.push.held() + KEPT_COST
    }
}

pub struct Stream {
    pub epoch: String,
    /// The offset of the newest push (0 before the first).
    pub top: u64,
    kept: VecDeque<Kept>,
    /// Bytes of `kept`, frames and costs.
    bytes: usize,
    /// When the newest push was stamped (or the stream made).
    pub last_ms: u64,
    size: usize,
    ttl_ms: u64,
}

impl Stream {
    /// A stream with nothing pushed yet, under a rule of `size` and `ttl_ms`.
    pub fn new(epoch: String, size: usize, ttl_ms: u64, now_ms: u64) -> Stream {
        Stream {
            epoch,
            top: 0,
            kept: VecDeque::new(),
            bytes: 0,
            last_ms: now_ms,
            size,
            ttl_ms,
        }
    }

    /// A stream handed over by its previous owner: the numbering goes on,
    /// under this node's rule (`size`, `ttl_ms`).
    pub fn handed_over(h: HandedStream, size: usize, ttl_ms: u64, now_ms: u64) -> Stream {
        let mut s = Stream {
            top: h.top,
            last_ms: h.last_ms,
            ..Stream::new(h.epoch, size, ttl_ms, now_ms)
        };
        for p in h.kept {
            let kept = Kept {
                offset: p.offset,
                at_ms: p.at_ms,
                push: p.push,
            };
            s.bytes += kept.cost();
            s.kept.push_back(kept);
        }
        while s.kept.len() > s.size {
            s.pop_oldest();
        }
        s.expire(now_ms);
        s
    }

    /// The stream as it moves to its next owner.
    pub fn hand_over(&self) -> HandedStream {
        HandedStream {
            epoch: self.epoch.clone(),
            top: self.top,
            last_ms: self.last_ms,
            kept: self
                .kept
                .iter()
                .map(|k| HandedPush {
                    offset: k.offset,
                    at_ms: k.at_ms,
                    push: k.push.clone(),
                })
                .collect(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Keeps the push `offset` (the next one: `top + 1`); the bytes the
    /// rule's `size` dropped, as (pushes, bytes).
    pub fn keep(&mut self, offset: u64, push: Push, now_ms: u64) -> (usize, usize) {
        self.top = offset;
        self.last_ms = now_ms;
        let kept = Kept {
            offset,
            at_ms: now_ms,
            push,
        };
        self.bytes += kept.cost();
        self.kept.push_back(kept);
        let mut dropped = (0, 0);
        while self.kept.len() > self.size {
            dropped.0 += 1;
            dropped.1 += self.pop_oldest();
        }
        dropped
    }

    /// Drops the pushes older than the rule's `ttl`: (pushes, bytes).
    pub fn expire(&mut self, now_ms: u64) -> (usize, usize) {
        let mut dropped = (0, 0);
        while self
            .kept
            .front()
            .is_some_and(|k| k.at_ms.saturating_add(self.ttl_ms) <= now_ms)
        {
            dropped.0 += 1;
            dropped.1 += self.pop_oldest();
        }
        dropped
    }

    /// Drops the oldest push; the bytes given back.
    pub fn pop_oldest(&mut self) -> usize {
        let freed = self.kept.pop_front().map_or(0, |k| k.cost());
        self.bytes -= freed;
        freed
    }

    /// The bytes of the `n`-th oldest push kept (0: the oldest), if kept.
    pub fn cost_of_oldest(&self, n: usize) -> Option<usize> {
        self.kept.get(n).map(Kept::cost)
    }

    /// The offset of the oldest push kept (`top + 1` when none is).
    fn oldest(&self) -> u64 {
        self.kept.front().map_or(self.top + 1, |k| k.offset)
    }

    /// The pushes a reader asking `ask` gets, oldest first, and where the
    /// stream stands: `recovered` when they are every push it asked for.
    pub fn read(&self, ask: &Ask) -> (Vec<Push>, Position) {
        let (from, recovered) = match ask {
            Ask::Last(n) => {
                let from = self.top.saturating_sub(u64::from(*n)) + 1;
                (from, from >= self.oldest())
            }
            Ask::Since { offset, epoch } => {
                let known = *epoch == self.epoch && *offset <= self.top;
                if known && offset + 1 >= self.oldest() {
                    (offset + 1, true)
                } else {
                    (0, false)
                }
            }
        };
        let frames = self.after(from.saturating_sub(1)).map(|k| k.push.clone());
        (frames.collect(), self.position(recovered))
    }

    /// Where the stream stands.
    pub fn position(&self, recovered: bool) -> Position {
        Position {
            recovered,
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }

    /// A page of `/api/get_group_history`: the oldest `limit` pushes after
    /// `since` (of this epoch; of another, after nothing), or without
    /// `since` the newest `limit`.
    pub fn page(&self, since: Option<(u64, &str)>, limit: usize) -> Vec<&Kept> {
        match since {
            Some((offset, epoch)) => {
                let after = if epoch == self.epoch { offset } else { 0 };
                self.after(after).take(limit).collect()
            }
            None => {
                let skip = self.kept.len().saturating_sub(limit);
                self.kept.iter().skip(skip).collect()
            }
        }
    }

    /// The kept pushes after `offset`, oldest first.
    fn after(&self, offset: u64) -> impl Iterator<Item = &Kept> {
        let skip = offset.saturating_add(1).saturating_sub(self.oldest());
        self.kept
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn push(n: u64) -> Push {
        Push::plain(Bytes::from(n.to_string()))
    }

    fn stream(size: usize, pushes: u64) -> Stream {
        let mut s = Stream::new("e1".into(), size, 60_000, 0);
        for n in 1..=pushes {
            s.keep(n, push(n), n);
        }
        s
    }

    fn offsets(frames: &[Push]) -> Vec<u64> {
        frames
            .iter()
            .map(|p| std::str::from_utf8(&p.plain).unwrap().parse().unwrap())
            .collect()
    }

    fn since(offset: u64, epoch: &str) -> Ask {
        Ask::Since {
            offset,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn the_size_keeps_the_newest_pushes() {
        let s = stream(3, 5);
        assert_eq!((s.top, s.len()), (5, 3));
        let (frames, pos) = s.read(&Ask::Last(2));
        assert_eq!(
            (offsets(&frames), pos.recovered, pos.offset),
            (vec![4, 5], true, 5)
        );
        let (frames, pos) = s.read(&Ask::Last(10));
        assert_eq!((offsets(&frames), pos.recovered), (vec![3, 4, 5], false));
        let (frames, pos) = stream(10, 2).read(&Ask::Last(10));
        assert_eq!((offsets(&frames), pos.recovered), (vec![1, 2], true));
    }

    #[test]
    fn since_recovers_what_is_kept_of_the_same_epoch() {
        let s = stream(3, 5);
        let read = |ask| {
            let (f, p) = s.read(&ask);
            (offsets(&f), p.recovered)
        };
        assert_eq!(read(since(3, "e1")), (vec![4, 5], true));
        assert_eq!(read(since(2, "e1")), (vec![3, 4, 5], true));
        assert_eq!(read(since(5, "e1")), (vec![], true));
        assert_eq!(
            read(since(1, "e1")),
            (vec![3, 4, 5], false),
            "push 2 is gone"
        );
        assert_eq!(read(since(4, "other")), (vec![3, 4, 5], false));
        assert_eq!(read(since(9, "e1")), (vec![3, 4, 5], false), "not yet sent");
        let empty = Stream::new("e".into(), 3, 1, 0);
        assert!(empty.read(&since(0, "e")).1.recovered);
    }

    #[test]
    fn pushes_expire_after_the_ttl_and_bytes_follow() {
        let mut s = Stream::new("e".into(), 10, 100, 0);
        s.keep(1, push(1), 0);
        s.keep(2, push(2), 50);
        let one = s.bytes() / 2;
        assert_eq!(s.expire(99), (0, 0));
        assert_eq!(s.expire(100), (1, one));
        assert_eq!((s.len(), s.bytes()), (1, one));
        let (frames, pos) = s.read(&since(0, "e"));
        assert_eq!((offsets(&frames), pos.recovered), (vec![2], false));
    }

    #[test]
    fn a_stream_handed_over_goes_on_with_its_numbering_under_the_new_rule() {
        let s = stream(10, 6);
        let moved = Stream::handed_over(s.hand_over(), 4, 60_000, 10);
        assert_eq!((moved.epoch.as_str(), moved.top, moved.len()), ("e1", 6, 4));
        let (frames, pos) = moved.read(&since(2, "e1"));
        assert_eq!((offsets(&frames), pos.recovered), (vec![3, 4, 5, 6], true));
        let expired = Stream::handed_over(s.hand_over(), 10, 5, 10);
        assert_eq!(
            (expired.top, expired.len()),
            (6, 1),
            "pushes stamped at 1..6 ms, ttl 5 ms"
        );
    }

    #[test]
    fn pages_are_the_oldest_after_since_or_the_newest() {
        let s = stream(10, 6);
        let page =
            |since, limit| -> Vec<u64> { s.page(since, limit).iter().map(|k| k.offset).collect() };
        assert_eq!(page(None, 2), [5, 6]);
        assert_eq!(page(Some((2, "e1")), 2), [3, 4]);
        assert_eq!(page(Some((2, "old")), 2), [1, 2]);
        assert_eq!(page(Some((6, "e1")), 2), Vec::<u64>::new());
    }
}
