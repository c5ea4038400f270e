//! Connection slots of one core: a slab whose entries carry a generation.
//!
//! A clientId names (slot, generation), so a stale id (its connection gone,
//! the slot reused) finds a newer generation and is answered "offline" —
//! never delivered to the newcomer. Free slots are reused oldest-first so a
//! single slot's generation advances slowly, and a slot whose 24-bit
//! generation is spent is retired rather than wrapped: an id is never reused.
//! Values are boxed so the slab itself stays 16 bytes per slot and growth of
//! the vector costs no per-connection slack.

use std::collections::VecDeque;

use crate::client_id::{MAX_GENERATION, MAX_SLOT};

struct Entry<T> {
    generation: u32,
    value: Option<Box<T>>,
}

pub struct Slots<T> {
    entries: Vec<Entry<T>>,
    free: VecDeque<u32>,
    live: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: VecDeque::new(),
            live: 0,
        }
    }
}

impl<T> Slots<T> {
    /// The (slot, generation) the next `insert` will use, if any slot is left.
    pub fn vacant(&mut self) -> Option<(u32, u32)> {
        if let Some(&slot) = self.free.front() {
            return Some((slot, self.entries[slot as usize].generation));
        }
        let slot = u32::try_from(self.entries.len()).ok()?;
        if slot > MAX_SLOT {
            return None;
        }
        self.entries.push(Entry {
            generation: 0,
            value: None,
        });
        self.free.push_back(slot);
        Some((slot, 0))
    }

    /// Stores `value` in the slot `vacant` announced.
    pub fn insert(&mut self, value: T) -> Option<(u32, u32)> {
        let (slot, generation) = self.vacant()?;
        self.free.pop_front();
        self.entries[slot as usize].value = Some(Box::new(value));
        self.live += 1;
        Some((slot, generation))
    }

    pub fn get(&self, slot: u32, generation: u32) -> Option<&T> {
        let e = self.entries.get(slot as usize)?;
        (e.generation == generation).then_some(())?;
        e.value.as_deref()
    }

    pub fn get_mut(&mut self, slot: u32, generation: u32) -> Option<&mut T> {
        let e = self.entries.get_mut(slot as usize)?;
        (e.generation == generation).then_some(())?;
        e.value.as_deref_mut()
    }

    /// The live value in `slot` whatever its generation (index walks hold
    /// slots of live connections only).
    pub fn at_mut(&mut self, slot: u32) -> Option<(u32, &mut T)> {
        let e = self.entries.get_mut(slot as usize)?;
        let generation = e.generation;
        e.value.as_deref_mut().map(|v| (generation, v))
    }

    /// The live value in `slot` whatever its generation.
    pub fn at(&self, slot: u32) -> Option<(u32, &T)> {
        let e = self.entries.get(slot as usize)?;
        e.value.as_deref().map(|v| (e.generation, v))
    }

    pub fn remove(&mut self, slot: u32, generation: u32) -> Option<Box<T>> {
        let e = self.entries.get_mut(slot as usize)?;
        if e.generation != generation {
            return None;
        }
        let value = e.value.take()?;
        self.live -= 1;
        if e.generation < MAX_GENERATION {
            e.generation += 1;
            self.free.push_back(slot);
        }
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// (slot, generation) of every live value.
    pub fn keys(&self) -> Vec<(u32, u32)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(i, e)| (i as u32, e.generation))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_generation_misses() {
        let mut s = Slots::default();
        let (slot, gen) = s.insert("a").expect("slot");
        assert_eq!(s.get(slot, gen), Some(&"a"));
        assert!(s.remove(slot, gen).is_some());
        assert!(s.get(slot, gen).is_none());
        let (slot2, gen2) = s.insert("b").expect("slot");
        assert_eq!(slot2, slot);
        assert_eq!(gen2, gen + 1);
        assert!(
            s.get(slot, gen).is_none(),
            "old id must not see the newcomer"
        );
        assert!(s.remove(slot, gen).is_none());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn free_slots_are_reused_oldest_first() {
        let mut s = Slots::default();
        let a = s.insert(1).expect("slot");
        let b = s.insert(2).expect("slot");
        s.remove(a.0, a.1);
        s.remove(b.0, b.1);
        assert_eq!(s.insert(3).expect("slot").0, a.0);
        assert_eq!(s.insert(4).expect("slot").0, b.0);
    }

    #[test]
    fn spent_slot_is_retired() {
        let mut s = Slots::default();
        let (slot, _) = s.insert(0).expect("slot");
        s.entries[slot as usize].generation = MAX_GENERATION;
        s.remove(slot, MAX_GENERATION);
        let (next, gen) = s.insert(1).expect("slot");
        assert_ne!(next, slot);
        assert_eq!(gen, 0);
    }
}
