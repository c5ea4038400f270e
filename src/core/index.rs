//! Who is in which group, user and system — for the connections of one core.
//!
//! Membership lives with the core that owns the connections (shard per
//! core), so a group send walks this core's members without any lock; a
//! cluster-wide view is a scatter-gather over cores. Sets hold slots: the
//! owner removes a connection from every set before its slot is freed, so a
//! slot found here is always the live member.
//!
//! A set is walked in slot order, which is the order the core accepted its
//! connections in until slots are reused: a fan-out then reads the slab,
//! the connections' state and the kernel's sockets one after another rather
//! than all over memory, and so do the clients' receiving ends on a
//! machine that holds many of them (a hash set's order made a paced fan-out
//! pay a cache miss per member at each of those steps).

use std::collections::BTreeSet;
use std::rc::Rc;

use hashbrown::HashMap;

/// Slots of one set, in slot order.
type SlotSet = BTreeSet<u32>;

#[derive(Default)]
struct Members {
    all: SlotSet,
    groups: HashMap<Rc<str>, SlotSet>,
    users: HashMap<Rc<str>, SlotSet>,
}

/// Whom a fan-out reaches on this core.
#[derive(Clone, Copy, Debug)]
pub enum Audience<'a> {
    /// Every connection of a system.
    System(&'a str),
    /// The members of (system, group).
    Group(&'a str, &'a str),
    /// The connections of (system, userId).
    User(&'a str, &'a str),
}

#[derive(Default)]
pub struct GroupIndex {
    systems: HashMap<Rc<str>, Members>,
}

fn remove_from(map: &mut HashMap<Rc<str>, SlotSet>, key: &str, slot: u32) -> bool {
    let Some(set) = map.get_mut(key) else {
        return false;
    };
    let removed = set.remove(&slot);
    if set.is_empty() {
        map.remove(key);
    }
    removed
}

impl GroupIndex {
    pub fn add_conn(&mut self, system: &Rc<str>, slot: u32) {
        self.systems
            .entry_ref(system.as_ref())
            .or_insert_with(Members::default)
            .all
            .insert(slot);
    }

    /// Forgets the connection everywhere; `groups` and `user` are what the
    /// connection recorded of itself.
    pub fn remove_conn(&mut self, system: &str, slot: u32, groups: &[Rc<str>], user: &str) {
        let Some(m) = self.systems.get_mut(system) else {
            return;
        };
        m.all.remove(&slot);
        for g in groups {
            remove_from(&mut m.groups, g, slot);
        }
        if !user.is_empty() {
            remove_from(&mut m.users, user, slot);
        }
        if m.all.is_empty() {
            self.systems.remove(system);
        }
    }

    /// Returns true when the connection was not yet a member.
    pub fn join(&mut self, system: &str, group: &Rc<str>, slot: u32) -> bool {
        let Some(m) = self.systems.get_mut(system) else {
            return false;
        };
        m.groups.entry(group.clone()).or_default().insert(slot)
    }

    pub fn leave(&mut self, system: &str, group: &str, slot: u32) -> bool {
        self.systems
            .get_mut(system)
            .is_some_and(|m| remove_from(&mut m.groups, group, slot))
    }

    pub fn set_user(&mut self, system: &str, old: &str, new: &Rc<str>, slot: u32) {
        let Some(m) = self.systems.get_mut(system) else {
            return;
        };
        if !old.is_empty() {
            remove_from(&mut m.users, old, slot);
        }
        if !new.is_empty() {
            m.users.entry(new.clone()).or_default().insert(slot);
        }
    }

    /// The slots of `audience`, walked in place.
    pub fn members(&self, audience: Audience<'_>) -> impl Iterator<Item = u32> + '_ {
        let set = match audience {
            Audience::System(system) => self.systems.get(system).map(|m| &m.all),
            Audience::Group(system, group) => {
                self.systems.get(system).and_then(|m| m.groups.get(group))
            }
            Audience::User(system, user) => {
                self.systems.get(system).and_then(|m| m.users.get(user))
            }
        };
        set.into_iter().flatten().copied()
    }

    /// (group name, members on this core) for every group of the system.
    pub fn group_counts(&self, system: &str) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.systems
            .get(system)
            .into_iter()
            .flat_map(|m| m.groups.iter().map(|(g, s)| (g.as_ref(), s.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(s: &str) -> Rc<str> {
        Rc::from(s)
    }

    #[test]
    fn membership_is_per_system() {
        let mut ix = GroupIndex::default();
        let (a, b) = (rc("sys-a"), rc("sys-b"));
        ix.add_conn(&a, 1);
        ix.add_conn(&b, 2);
        assert!(ix.join("sys-a", &rc("room"), 1));
        assert!(!ix.join("sys-a", &rc("room"), 1), "second join is not new");
        assert!(ix.join("sys-b", &rc("room"), 2));
        assert_eq!(
            ix.members(Audience::Group("sys-a", "room"))
                .collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(
            ix.members(Audience::System("sys-b")).collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[test]
    fn members_are_walked_in_slot_order() {
        // docs/architecture.md rule 2: a fan-out reads connections in the
        // order they were accepted, whatever order they joined in.
        let mut ix = GroupIndex::default();
        let s = rc("s");
        let slots = [907, 3, 512, 64, 5000, 1, 77];
        for slot in slots {
            ix.add_conn(&s, slot);
            ix.join("s", &rc("g"), slot);
        }
        let mut sorted = slots.to_vec();
        sorted.sort_unstable();
        let walked = |a| ix.members(a).collect::<Vec<_>>();
        assert_eq!(walked(Audience::System("s")), sorted);
        assert_eq!(walked(Audience::Group("s", "g")), sorted);
    }

    #[test]
    fn removal_cleans_every_set() {
        let mut ix = GroupIndex::default();
        let s = rc("s");
        ix.add_conn(&s, 7);
        ix.join("s", &rc("g1"), 7);
        ix.join("s", &rc("g2"), 7);
        ix.set_user("s", "", &rc("alice"), 7);
        ix.remove_conn("s", 7, &[rc("g1"), rc("g2")], "alice");
        assert_eq!(ix.members(Audience::Group("s", "g1")).count(), 0);
        assert_eq!(ix.members(Audience::User("s", "alice")).count(), 0);
        assert_eq!(ix.group_counts("s").count(), 0);
        assert_eq!(ix.members(Audience::System("s")).count(), 0);
    }

    #[test]
    fn user_change_moves_the_slot() {
        let mut ix = GroupIndex::default();
        let s = rc("s");
        ix.add_conn(&s, 3);
        ix.set_user("s", "", &rc("u1"), 3);
        ix.set_user("s", "u1", &rc("u2"), 3);
        assert_eq!(ix.members(Audience::User("s", "u1")).count(), 0);
        assert_eq!(
            ix.members(Audience::User("s", "u2")).collect::<Vec<_>>(),
            vec![3]
        );
    }
}
