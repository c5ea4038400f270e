//! Walking one group of 10,000 members in a core's `GroupIndex` in place
//! (nothing copied): the index side of a `send_to_group` fan-out.
//!
//! Why it matters: a group send visits every member on every core, so for
//! big rooms the walk is paid per push and grows with the room. Together
//! with one `Bytes` clone and one queue push per member, it bounds how many
//! recipients per second a core can reach; this bench isolates the part the
//! index owns (a sorted set's iteration, in slot order), without allocation.
//! A hash set walked faster here (6.4 against 10.8 µs for 10,000 members,
//! 2026-12-07), but in its own order: a paced fan-out then read the slab,
//! the connections and the sockets all over memory and cost 13 % more per
//! delivery (docs/architecture.md, rule 2).

use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast::core::index::{Audience, GroupIndex};

const MEMBERS: u32 = 10_000;

fn bench_group_walk(c: &mut Criterion) {
    let system: Rc<str> = Rc::from("demo-system");
    let room: Rc<str> = Rc::from("live-room-10086");
    let other: Rc<str> = Rc::from("other-room");
    let mut index = GroupIndex::default();
    for slot in 0..MEMBERS {
        index.add_conn(&system, slot);
        assert!(index.join(&system, &room, slot));
        // Some members are also in a second group, as in real rooms.
        if slot % 4 == 0 {
            index.join(&system, &other, slot);
        }
    }
    let room_of = |s, g| Audience::Group(s, g);
    assert_eq!(
        index.members(room_of(&system, &room)).count(),
        MEMBERS as usize
    );

    let mut group = c.benchmark_group("group_index");
    group.throughput(Throughput::Elements(u64::from(MEMBERS)));
    group.bench_function("walk_10k_members", |b| {
        b.iter(|| {
            let members = index.members(room_of(
                black_box("demo-system"),
                black_box("live-room-10086"),
            ));
            black_box(members.fold(0u64, |sum, slot| sum + u64::from(slot)))
        });
    });
    group.finish();
}

criterion_group!(benches, bench_group_walk);
criterion_main!(benches);
