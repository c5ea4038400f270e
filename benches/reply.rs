//! The reply channel of a request (`mailbox::reply_channel`): one per API
//! call that waits for an answer (a send to one clientId, a user or list
//! query on every core), one per request to a peer node.
//!
//! Why it matters: the channel is made, answered and dropped per request,
//! so its cost is paid on every call of the hot path. Three ways a reply
//! arrives: already there when the asker looks (`try_recv`: the operation
//! ran on the asking core, `peer_frames::on_owner`), there at the first
//! poll of the await (a local ask), and from another core's thread (made,
//! handed over through a mailbox channel, answered there, awaited here:
//! the round trip, wake-ups included).

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use shardcast::mailbox::{channel, reply_channel, Reply};

fn runtime() -> monoio::Runtime<monoio::LegacyDriver> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .expect("runtime")
}

/// Runs `one` `iters` times inside the runtime (one `block_on` for all of
/// them); how long that took.
fn timed<F: Future<Output = ()>>(
    rt: &mut monoio::Runtime<monoio::LegacyDriver>,
    iters: u64,
    one: impl Fn() -> F,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            one().await;
        }
        start.elapsed()
    })
}

fn bench_reply(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply");
    group.bench_function("answered_then_try_recv", |b| {
        b.iter(|| {
            let (tx, mut rx) = reply_channel::<u64>();
            let _ = tx.send(black_box(7));
            black_box(rx.try_recv().ok())
        });
    });
    let mut rt = runtime();
    group.bench_function("answered_then_awaited", |b| {
        b.iter_custom(|iters| {
            timed(&mut rt, iters, || async {
                let (tx, rx) = reply_channel::<u64>();
                let _ = tx.send(black_box(7));
                black_box(rx.await.ok());
            })
        });
    });
    // Another thread stands for the answering core: it takes the reply
    // senders from its mailbox and answers each at once.
    let (mailbox, mail) = channel::channel::<Reply<u64>>();
    let answerer = std::thread::spawn(move || {
        runtime().block_on(async move {
            loop {
                let reply = mail.recv().await;
                if reply.send(7).is_err() {
                    return;
                }
            }
        })
    });
    group.bench_function("round_trip_to_another_thread", |b| {
        b.iter_custom(|iters| {
            timed(&mut rt, iters, || async {
                let (tx, rx) = reply_channel::<u64>();
                mailbox.send(tx).expect("answerer up");
                black_box(rx.await.ok());
            })
        });
    });
    group.finish();
    // A reply whose receiver is gone stops the answerer.
    let (tx, rx) = reply_channel::<u64>();
    drop(rx);
    mailbox.send(tx).expect("answerer up");
    answerer.join().expect("answerer");
}

criterion_group!(benches, bench_reply);
criterion_main!(benches);
