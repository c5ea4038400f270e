//! One `send_to_group` fanned out to 10,000 members of one core, without
//! sockets: walk the core's `GroupIndex` in place, and queue the same pre-encoded
//! push frame (`Bytes`) on each member's `OutQueue` — what a core does per
//! recipient before its single write per connection.
//!
//! Why it matters: docs/architecture.md says a fan-out allocates nothing per recipient
//! and encodes once. This measures that path in steady state (queues have
//! their capacity from earlier pushes, as on a live node); the per-message
//! encode is `push_frame`, benched separately; `histogram/timed_observation` is
//! what the duration histograms add per fan-out and per API request.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast::core::conn::out_queue::OutQueue;
use shardcast::core::index::{Audience, GroupIndex};
use shardcast::metrics::histogram::Histogram;

const MEMBERS: u32 = 10_000;
const LIMIT: usize = 1 << 20;

fn bench_fan_out(c: &mut Criterion) {
    let system: Rc<str> = Rc::from("demo-system");
    let room: Rc<str> = Rc::from("live-room");
    let mut index = GroupIndex::default();
    for slot in 0..MEMBERS {
        index.add_conn(&system, slot);
        index.join(&system, &room, slot);
    }
    let mut queues: Vec<OutQueue> = (0..MEMBERS).map(|_| OutQueue::default()).collect();
    let frame = Bytes::from(vec![b'x'; 120]);
    let fan_out = |queues: &mut [OutQueue]| {
        let room = Audience::Group(black_box("demo-system"), black_box("live-room"));
        for slot in index.members(room) {
            let q = &mut queues[slot as usize];
            if !q.would_exceed(frame.len(), LIMIT) {
                q.push(frame.clone());
            }
        }
    };
    // Steady state: every queue already has its capacity.
    fan_out(&mut queues);
    queues.iter_mut().for_each(OutQueue::clear);

    let mut group = c.benchmark_group("fan_out");
    group.throughput(Throughput::Elements(u64::from(MEMBERS)));
    group.bench_function("group_send_10k_members", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                fan_out(&mut queues);
                spent += start.elapsed();
                // Writing the queues out is not part of this bench.
                queues.iter_mut().for_each(OutQueue::clear);
            }
            spent
        })
    });
    group.finish();

    // What the core adds per fan-out (and per API request) for its duration
    // histograms: two clock reads and one observation — next to the fan-out
    // above, the cost of `shardcast_fanout_duration_seconds`.
    let histogram = Histogram::default();
    c.bench_function("histogram/timed_observation", |b| {
        b.iter(|| {
            let start = Instant::now();
            histogram.observe(black_box(start.elapsed()));
        })
    });
}

criterion_group!(benches, bench_fan_out);
criterion_main!(benches);
