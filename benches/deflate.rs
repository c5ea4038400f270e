//! permessage-deflate of push envelopes (docs/api.md §10): compression level
//! 1, 2 and 6 of zlib-rs, reset per message (no context takeover, as
//! `ws::deflate::compress` does), on realistic pushes — the frame's JSON
//! as `ws::message::push_frame` writes it, with `data` a chat line, an order
//! object of about 300 B, 1 KiB, 4 KiB and 16 KiB (records with the same
//! keys and a few values each), or a feed of 1, 4 and 16 KiB (random ids,
//! times and users: more entropy) — and inflating one
//! message as the core's inflater does (`ws::deflate::inflate`).
//!
//! Why it matters: a push is compressed once, whatever its number of
//! recipients, so this is a per-push cost beside encoding it
//! (benches/push_frame.rs); the level trades that time for bytes on every
//! recipient's wire. Before the criterion timings, a table is printed with,
//! per payload and level, the compressed size, the ratio and the time per
//! message and per byte in thread CPU time (what a loaded machine's wall
//! clock blurs).
//!
//!     cargo bench --bench deflate

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::{Compress, Compression, FlushCompress};
use shardcast::ws::deflate::{compress::LEVEL, compressed_text, inflate::inflate, TAIL};
use shardcast::ws::message::push_frame;
use shardcast::ws::{MessageId, MessageIdGen};

#[path = "common/cpu.rs"]
mod cpu;
use cpu::thread_cpu_ns;

const LEVELS: [u32; 3] = [1, 2, 6];
/// The table also has level 4, the cheapest of zlib-ng's "medium" strategy.
const TABLE_LEVELS: [u32; 4] = [1, 2, 4, 6];

/// An order-update `data` object of at least `min` bytes: varied SKUs,
/// names, quantities and prices, as a shop backend would push.
fn order(min: usize) -> String {
    let names = [
        "Widget",
        "Gadget \"pro\"",
        "Sprocket",
        "Gizmo n°7",
        "Doohickey",
        "Flange",
    ];
    let mut items = Vec::new();
    let mut i = 0u32;
    while items.iter().map(|s: &String| s.len() + 1).sum::<usize>() + 120 < min {
        items.push(format!(
            r#"{{"sku":"SKU-{:05}","name":"{} {}","qty":{},"price":{}.{:02},"warehouse":"WH-{}"}}"#,
            (i * 7919) % 100_000,
            names[(i as usize) % names.len()],
            i * 13 % 97,
            i % 7 + 1,
            (i * 37) % 500 + 5,
            (i * 11) % 100,
            i % 4
        ));
        i += 1;
    }
    format!(
        r#"{{"type":"order.updated","orderId":"ORD-2026-{:06}","status":"shipped","updatedAt":"2026-12-07T12:00:00Z","items":[{}],"total":1234.5}}"#,
        i * 104_729 % 1_000_000,
        items.join(",")
    )
}

/// A feed `data` of at least `min` bytes with more entropy than an order:
/// random ids, timestamps and users, text drawn from a vocabulary.
fn feed(min: usize) -> String {
    let words = [
        "the",
        "order",
        "shipped",
        "today",
        "price",
        "dropped",
        "new",
        "message",
        "from",
        "team",
        "meeting",
        "moved",
        "to",
        "Friday",
        "please",
        "check",
        "your",
        "inbox",
        "build",
        "failed",
        "deploy",
        "done",
        "ticket",
        "closed",
        "review",
        "requested",
        "on",
        "branch",
        "main",
        "fix",
    ];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut events = Vec::new();
    while events.iter().map(|s: &String| s.len() + 1).sum::<usize>() + 40 < min {
        let text: Vec<&str> = (0..6).map(|_| words[(next() % 30) as usize]).collect();
        events.push(format!(
            r#"{{"id":"{:016x}","ts":{},"user":"u{}","text":"{}"}}"#,
            next(),
            1_780_000_000 + next() % 10_000_000,
            next() % 100_000,
            text.join(" ")
        ));
    }
    format!(r#"{{"type":"feed","events":[{}]}}"#, events.join(","))
}

/// The push payloads: (name, the JSON text of the push frame).
fn payloads() -> Vec<(String, Vec<u8>)> {
    let id = MessageIdGen::new(0x1234_5678_9abc_def0, 0).next();
    let chat =
        r#""Hello room! Is anyone here going to the meetup on Friday? I can bring the projector.""#;
    let mut out = vec![("chat".to_string(), json_of(id, chat))];
    for size in [300, 1024, 4096, 16384] {
        out.push((format!("order_{size}"), json_of(id, &order(size))));
    }
    for size in [1024, 4096, 16384] {
        out.push((format!("feed_{size}"), json_of(id, &feed(size))));
    }
    out
}

/// A push frame's payload (its JSON, without the frame header).
fn json_of(id: MessageId, data: &str) -> Vec<u8> {
    let frame = push_frame(id, "order-service", 200, "order", data);
    let head = shardcast::ws::frame::parse_head(&frame).expect("a header");
    frame[head.header_len..].to_vec()
}

/// One message deflated from a reset state, the tail removed: its length.
fn deflate(z: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> usize {
    z.reset();
    out.clear();
    z.compress_vec(payload, out, FlushCompress::Sync)
        .expect("room enough");
    out.len() - TAIL.len()
}

/// Per payload and level: compressed bytes, ratio, µs per message and ns per
/// byte (thread CPU time over about 40 MB of input, the best of 3 runs).
fn report_ratios(payloads: &[(String, Vec<u8>)]) {
    eprintln!("payload        bytes | level: bytes ratio µs/msg ns/B");
    for (name, p) in payloads {
        let mut line = format!("{name:<12} {:>7}", p.len());
        for level in TABLE_LEVELS {
            let mut z = Compress::new_with_window_bits(Compression::new(level), false, 15);
            let mut out = Vec::with_capacity(p.len() + 64);
            let n = deflate(&mut z, p, &mut out);
            let iters = (40_000_000 / p.len()).max(1000);
            let best = (0..3)
                .map(|_| {
                    let start = thread_cpu_ns();
                    for _ in 0..iters {
                        black_box(deflate(&mut z, black_box(p), &mut out));
                    }
                    thread_cpu_ns() - start
                })
                .min()
                .unwrap_or(0) as f64;
            let per_msg = best / iters as f64;
            line += &format!(
                " | L{level}: {n:>5} {:>4.2}x {:>6.2} {:>5.2}",
                p.len() as f64 / n as f64,
                per_msg / 1000.0,
                per_msg / p.len() as f64
            );
        }
        eprintln!("{line}");
    }
}

fn bench_levels(c: &mut Criterion) {
    let payloads = payloads();
    // Only under `cargo bench` (which passes --bench): `cargo test --benches`
    // runs each bench once as a test, and the table takes minutes unoptimised.
    if std::env::args().any(|a| a == "--bench") {
        report_ratios(&payloads);
    }
    let mut group = c.benchmark_group("deflate_level");
    for (name, p) in &payloads {
        group.throughput(Throughput::Bytes(p.len() as u64));
        for level in LEVELS {
            let mut z = Compress::new_with_window_bits(Compression::new(level), false, 15);
            let mut out = Vec::with_capacity(p.len() + 64);
            group.bench_function(format!("{name}/L{level}"), |b| {
                b.iter(|| deflate(&mut z, black_box(p), &mut out))
            });
        }
    }
    group.finish();
}

/// What the node runs: the chosen level into a frame, and inflating it.
fn bench_node_path(c: &mut Criterion) {
    let payloads = payloads();
    let mut group = c.benchmark_group("deflate_node");
    for (name, p) in &payloads {
        group.throughput(Throughput::Bytes(p.len() as u64));
        group.bench_function(format!("{name}/compressed_text_L{LEVEL}"), |b| {
            b.iter(|| compressed_text(black_box(p), 0, 15))
        });
        let frame = compressed_text(p, 0, 15).expect("JSON shrinks");
        let head = shardcast::ws::frame::parse_head(&frame).expect("a header");
        let body = &frame[head.header_len..];
        let mut out = Vec::with_capacity(p.len());
        group.bench_function(format!("{name}/inflate"), |b| {
            b.iter(|| {
                out.clear();
                inflate(black_box(body), p.len(), &mut out)
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_levels, bench_node_path
}
criterion_main!(benches);
