//! The flush path: writing queued push frames to connections' sockets, one
//! frame per `sendmsg` against several frames per `sendmsg`.
//!
//! Why it matters: a delivery's cost is dominated by the write (a syscall per
//! connection, kernel work per call); the core flushes in slices
//! (`core/write.rs`) so that under load a queue holds several frames by the
//! time it is written. This measures what that buys per delivered frame on
//! real sockets: 1,000 local socket pairs, a 64-byte push frame, the queue of
//! each written once with 1, 4 or 16 frames in it. The readers are drained
//! outside the timed part.

use std::hint::black_box;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast::core::conn::out_queue::OutQueue;

const CONNS: usize = 1_000;

struct Conn {
    out: OutQueue,
    writer: UnixStream,
    reader: UnixStream,
}

fn conns() -> Vec<Conn> {
    (0..CONNS)
        .map(|_| {
            let (writer, reader) = UnixStream::pair().expect("socket pair");
            writer.set_nonblocking(true).expect("nonblocking");
            reader.set_nonblocking(true).expect("nonblocking");
            Conn {
                out: OutQueue::default(),
                writer,
                reader,
            }
        })
        .collect()
}

/// Reads whatever the readers hold, so the next round's writes never block.
fn drain(conns: &mut [Conn], buf: &mut [u8]) {
    for c in conns {
        while matches!((&c.reader).read(buf), Ok(n) if n > 0) {}
    }
}

fn bench_flush(c: &mut Criterion) {
    let frame = Bytes::from(vec![b'x'; 64]);
    let mut conns = conns();
    let mut buf = vec![0u8; 64 * 1024];
    let mut group = c.benchmark_group("flush");
    for per_write in [1usize, 4, 16] {
        group.throughput(Throughput::Elements((CONNS * per_write) as u64));
        group.bench_function(format!("{per_write}_frames_per_write"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for c in conns.iter_mut() {
                        for _ in 0..per_write {
                            c.out.push(frame.clone());
                        }
                        let written = c.out.write_to(c.writer.as_raw_fd()).expect("write");
                        black_box(written);
                    }
                    spent += start.elapsed();
                    drain(&mut conns, &mut buf);
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_flush);
criterion_main!(benches);
