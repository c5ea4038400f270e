//! The streams one core owns, under its share of `history.max_bytes`:
//! past it the oldest pushes of the largest streams go first, so that one
//! busy room cannot empty every quiet room's history.

use std::collections::{BinaryHeap, HashMap};

use super::stream::Stream;
use crate::config::HistoryRule;
use crate::json::hex16;
use crate::ws::Push;

/// What a bound or an expiry dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Pushes the node-wide bound (`history.max_bytes`) dropped.
    pub bound: usize,
    /// Pushes past their rule's `size` or `ttl`.
    pub rule: usize,
    /// Streams forgotten after `history.meta_ttl`.
    pub streams: usize,
}

pub struct Streams {
    by_system: HashMap<Box<str>, HashMap<Box<str>, Stream>>,
    bytes: usize,
    count: usize,
    /// This core's share of `history.max_bytes`.
    limit: usize,
}

impl Streams {
    pub fn new(limit: usize) -> Streams {
        Streams {
            by_system: HashMap::new(),
            bytes: 0,
            count: 0,
            limit,
        }
    }

    /// Bytes kept by every stream of the core.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Streams the core owns.
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn get(&self, system: &str, group: &str) -> Option<&Stream> {
        self.by_system.get(system)?.get(group)
    }

    /// Numbers the next push of (system, group) — a stream made under
    /// `rule`, with a new epoch, if it has none — encodes it with
    /// `encode(offset, epoch)` and keeps it. The push, its offset, and what
    /// the bounds dropped to make room.
    pub fn stamp(
        &mut self,
        (system, group): (&str, &str),
        rule: &HistoryRule,
        now_ms: u64,
        encode: impl FnOnce(u64, &str) -> Push,
    ) -> (Push, u64, Dropped) {
        if self.get(system, group).is_none() {
            let stream = Stream::new(new_epoch(), rule.size, ttl_ms(rule), now_ms);
            self.insert(system, group, stream);
        }
        let stream = self
            .by_system
            .get_mut(system)
            .and_then(|g| g.get_mut(group))
            .unwrap_or_else(|| unreachable!("inserted above"));
        let offset = stream.top + 1;
        let push = encode(offset, &stream.epoch);
        let before = stream.bytes();
        let (rule_dropped, _) = stream.keep(offset, push.clone(), now_ms);
        self.bytes = self.bytes + stream.bytes() - before;
        let mut dropped = Dropped {
            rule: rule_dropped,
            ..Dropped::default()
        };
        dropped.bound = self.bound();
        (push, offset, dropped)
    }

    /// Adds `stream` (a new one, or one handed over), replacing any.
    pub fn insert(&mut self, system: &str, group: &str, stream: Stream) {
        self.bytes += stream.bytes();
        let groups = self.by_system.entry(system.into()).or_default();
        match groups.insert(group.into(), stream) {
            Some(old) => self.bytes -= old.bytes(),
            None => self.count += 1,
        }
    }

    /// Takes (system, group) out (its ownership moves).
    pub fn remove(&mut self, system: &str, group: &str) -> Option<Stream> {
        let groups = self.by_system.get_mut(system)?;
        let stream = groups.remove(group)?;
        if groups.is_empty() {
            self.by_system.remove(system);
        }
        self.bytes -= stream.bytes();
        self.count -= 1;
        Some(stream)
    }

    /// Every stream, as (system, group).
    pub fn keys(&self) -> Vec<(String, String)> {
        let each = self
            .by_system
            .iter()
            .flat_map(|(s, groups)| groups.keys().map(move |g| (s.to_string(), g.to_string())));
        each.collect()
    }

    /// Drops the pushes past their `ttl` and the streams past
    /// `history.meta_ttl` with nothing kept.
    pub fn sweep(&mut self, now_ms: u64, meta_ttl_ms: u64) -> Dropped {
        let mut dropped = Dropped::default();
        let mut freed = 0;
        for groups in self.by_system.values_mut() {
            groups.retain(|_, stream| {
                let (pushes, bytes) = stream.expire(now_ms);
                dropped.rule += pushes;
                freed += bytes;
                let forgotten =
                    stream.is_empty() && stream.last_ms.saturating_add(meta_ttl_ms) <= now_ms;
                dropped.streams += usize::from(forgotten);
                !forgotten
            });
        }
        self.by_system.retain(|_, groups| !groups.is_empty());
        self.bytes -= freed;
        self.count -= dropped.streams;
        dropped
    }

    /// Past the limit: drops the oldest pushes of the largest streams until
    /// the core keeps 1/64 less than its limit (so that a full core does not
    /// rank its streams at every push). How many pushes went.
    fn bound(&mut self) -> usize {
        if self.bytes <= self.limit {
            return 0;
        }
        let target = self.limit - self.limit / 64;
        let mut largest: BinaryHeap<(usize, &str, &str)> = BinaryHeap::new();
        for (s, groups) in &self.by_system {
            for (g, stream) in groups {
                largest.push((stream.bytes(), s, g));
            }
        }
        let mut victims: Vec<(String, String)> = Vec::new();
        let mut bytes = self.bytes;
        let mut sizes: HashMap<(String, String), usize> = HashMap::new();
        // Plan on the sizes alone, then drop: the heap borrows the map.
        while bytes > target {
            let Some((size, s, g)) = largest.pop() else {
                break;
            };
            let stream = &self.by_system[s][g];
            let done = sizes.entry((s.into(), g.into())).or_insert(0);
            let Some(cost) = stream.cost_of_oldest(*done) else {
                continue;
            };
            *done += 1;
            bytes -= cost;
            victims.push((s.into(), g.into()));
            largest.push((size - cost, s, g));
        }
        drop(largest);
        let mut dropped = 0;
        for (s, g) in victims {
            if let Some(stream) = self.by_system.get_mut(&*s).and_then(|m| m.get_mut(&*g)) {
                self.bytes -= stream.pop_oldest();
                dropped += 1;
            }
        }
        dropped
    }
}

fn ttl_ms(rule: &HistoryRule) -> u64 {
    rule.ttl.as_millis() as u64
}

/// A new epoch: 16 random hex digits (the time, should randomness fail:
/// an epoch must differ from the one whose history was lost, not be secret).
pub fn new_epoch() -> String {
    let mut b = [0u8; 8];
    let n = match getrandom::getrandom(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    String::from_utf8_lossy(&hex16(n)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn rule(size: usize) -> HistoryRule {
        HistoryRule {
            prefix: String::new(),
            size,
            ttl: Duration::from_secs(60),
        }
    }

    fn stamp(s: &mut Streams, group: &str, len: usize) -> (u64, Dropped) {
        let (_, offset, dropped) = s.stamp(("sys", group), &rule(100), 0, |_, _| {
            Push::plain(Bytes::from(vec![b'x'; len]))
        });
        (offset, dropped)
    }

    #[test]
    fn each_stream_numbers_its_own_pushes_under_its_own_epoch() {
        let mut s = Streams::new(1 << 20);
        assert_eq!(stamp(&mut s, "a", 10).0, 1);
        assert_eq!(stamp(&mut s, "a", 10).0, 2);
        assert_eq!(stamp(&mut s, "b", 10).0, 1);
        assert_eq!(s.count(), 2);
        assert_ne!(
            s.get("sys", "a").unwrap().epoch,
            s.get("sys", "b").unwrap().epoch
        );
        let (_, _, _) = s.stamp(("sys", "a"), &rule(100), 0, |offset, epoch| {
            assert_eq!((offset, epoch.len()), (3, 16));
            Push::default()
        });
    }

    #[test]
    fn the_bound_takes_from_the_largest_stream_first() {
        let one = 1000 + super::super::stream::KEPT_COST;
        let mut s = Streams::new(20 * one);
        for _ in 0..4 {
            stamp(&mut s, "quiet", 1000);
        }
        let mut bound = 0;
        for _ in 0..20 {
            bound += stamp(&mut s, "busy", 1000).1.bound;
        }
        assert!(bound > 0);
        assert!(s.bytes() <= 20 * one);
        assert_eq!(
            s.get("sys", "quiet").unwrap().len(),
            4,
            "the quiet room kept all"
        );
        let busy = s.get("sys", "busy").unwrap();
        assert_eq!(busy.top, 20);
        assert_eq!(s.bytes(), (4 + busy.len()) * one);
    }

    #[test]
    fn the_sweep_expires_pushes_then_forgets_empty_streams() {
        let mut s = Streams::new(1 << 20);
        stamp(&mut s, "a", 10);
        let d = s.sweep(59_999, 100_000);
        assert_eq!((d.rule, d.streams, s.count()), (0, 0, 1));
        let d = s.sweep(60_000, 100_000);
        assert_eq!((d.rule, d.streams, s.count(), s.bytes()), (1, 0, 1, 0));
        let d = s.sweep(99_999, 100_000);
        assert_eq!(
            (d.streams, s.count()),
            (0, 1),
            "its epoch outlives its pushes"
        );
        let d = s.sweep(100_000, 100_000);
        assert_eq!((d.streams, s.count()), (1, 0));
        assert!(s.get("sys", "a").is_none());
    }

    #[test]
    fn a_stream_handed_over_keeps_its_numbering() {
        let mut s = Streams::new(1 << 20);
        let handed = crate::op::HandedStream {
            epoch: "e9".into(),
            top: 41,
            last_ms: 0,
            kept: Vec::new(),
        };
        s.insert("sys", "a", Stream::handed_over(handed, 100, 60_000, 0));
        assert_eq!(stamp(&mut s, "a", 10).0, 42);
        assert_eq!(s.get("sys", "a").unwrap().epoch, "e9");
        let moved = s.remove("sys", "a").unwrap();
        assert_eq!((moved.top, s.count(), s.bytes()), (42, 0, 0));
    }
}
