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
use crate::op::ConnAddr;

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
    /// The address the next `insert` will use, if any slot is left.
    pub fn vacant(&mut self) -> Option<ConnAddr> {
        if let Some(&slot) = self.free.front() {
            let gen = self.entries[slot as usize].generation;
            return Some(ConnAddr { slot, gen });
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
        Some(ConnAddr { slot, gen: 0 })
    }

    /// Stores `value` in the slot `vacant` announced.
    pub fn insert(&mut self, value: T) -> Option<ConnAddr> {
        let addr = self.vacant()?;
        self.free.pop_front();
        self.entries[addr.slot as usize].value = Some(Box::new(value));
        self.live += 1;
        Some(addr)
    }

    pub fn get(&self, addr: ConnAddr) -> Option<&T> {
        let e = self.entries.get(addr.slot as usize)?;
        (e.generation == addr.gen).then_some(())?;
        e.value.as_deref()
    }

    pub fn get_mut(&mut self, addr: ConnAddr) -> Option<&mut T> {
        let e = self.entries.get_mut(addr.slot as usize)?;
        (e.generation == addr.gen).then_some(())?;
        e.value.as_deref_mut()
    }

    /// The live value in `slot` whatever its generation (index walks hold
    /// slots of live connections only).
    pub fn at_mut(&mut self, slot: u32) -> Option<(ConnAddr, &mut T)> {
        let e = self.entries.get_mut(slot as usize)?;
        let gen = e.generation;
        e.value.as_deref_mut().map(|v| (ConnAddr { slot, gen }, v))
    }

    /// The live value in `slot` whatever its generation.
    pub fn at(&self, slot: u32) -> Option<(ConnAddr, &T)> {
        let e = self.entries.get(slot as usize)?;
        let gen = e.generation;
        e.value.as_deref().map(|v| (ConnAddr { slot, gen }, v))
    }

    /// Where the entry of `addr`'s slot lives, to ask the CPU for it ahead
    /// of a `get` (`core/write.rs`): an address only, nothing is read.
    pub fn entry_ptr(&self, addr: ConnAddr) -> Option<*const u8> {
        let e = self.entries.get(addr.slot as usize)?;
        Some((e as *const Entry<T>).cast())
    }

    pub fn remove(&mut self, addr: ConnAddr) -> Option<Box<T>> {
        let slot = addr.slot;
        let e = self.entries.get_mut(slot as usize)?;
        if e.generation != addr.gen {
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

    /// One more than the highest slot ever used: every live value is at a
    /// slot below it (for walks that must not copy the keys).
    pub fn slot_count(&self) -> u32 {
        self.entries.len() as u32
    }

    /// The address of every live value.
    pub fn keys(&self) -> Vec<ConnAddr> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(i, e)| ConnAddr {
                slot: i as u32,
                gen: e.generation,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_generation_misses() {
        let mut s = Slots::default();
        let a = s.insert("a").expect("slot");
        assert_eq!(s.get(a), Some(&"a"));
        assert!(s.remove(a).is_some());
        assert!(s.get(a).is_none());
        let b = s.insert("b").expect("slot");
        assert_eq!(b.slot, a.slot);
        assert_eq!(b.gen, a.gen + 1);
        assert!(s.get(a).is_none(), "old id must not see the newcomer");
        assert!(s.remove(a).is_none());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn free_slots_are_reused_oldest_first() {
        let mut s = Slots::default();
        let a = s.insert(1).expect("slot");
        let b = s.insert(2).expect("slot");
        s.remove(a);
        s.remove(b);
        assert_eq!(s.insert(3).expect("slot").slot, a.slot);
        assert_eq!(s.insert(4).expect("slot").slot, b.slot);
    }

    #[test]
    fn spent_slot_is_retired() {
        let mut s = Slots::default();
        let slot = s.insert(0).expect("slot").slot;
        s.entries[slot as usize].generation = MAX_GENERATION;
        s.remove(ConnAddr {
            slot,
            gen: MAX_GENERATION,
        });
        let next = s.insert(1).expect("slot");
        assert_ne!(next.slot, slot);
        assert_eq!(next.gen, 0);
    }
}
