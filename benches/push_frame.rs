//! Building one push frame: the JSON envelope of docs/api.md §2 plus its RFC 6455
//! text-frame header, in one exactly sized allocation.
//!
//! Why it matters: a push is encoded once and the same `Bytes` is cloned to
//! every recipient, so this is the per-push (not per-recipient) CPU cost of
//! every `send_to_*` call: it bounds the API request rate a core can sustain
//! for small messages. Measured for a 64-byte string `data` (the typical chat
//! line) and a ~1 KiB JSON object `data` (a structured notification), each
//! decoded once from a realistic `send_to_group` body outside the loop, and
//! for the online/offline notice that bind/unbind/disconnect send.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast::api::body::{Body, SendToGroup};
use shardcast::ws::message::notice_frame;
use shardcast::ws::MessageIdGen;

/// A send_to_group body as the PHP SDK sends it, with a 64-byte string `data`.
fn string_body() -> String {
    let data = "Hello from the order service: your parcel #4711 has shipped!!!!!";
    assert_eq!(data.len(), 64);
    format!(
        r#"{{"sendUserId":"order-service","groupName":"room-42","code":0,"msg":"notice","data":"{data}"}}"#
    )
}

/// A send_to_group body whose `data` is a JSON object of about 1 KiB.
fn object_body() -> String {
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        let item = format!(
            r#"{{"sku":"SKU-{i:05}","name":"Widget \"deluxe\" n°{i}","qty":{},"price":{}.99}}"#,
            i % 7 + 1,
            i * 3 + 10
        );
        items.push(item);
        i += 1;
        if items.iter().map(|s| s.len() + 1).sum::<usize>() > 900 {
            break;
        }
    }
    let data = format!(
        r#"{{"type":"order.updated","orderId":"ORD-2024-000123","status":"shipped","items":[{}],"total":1234.5}}"#,
        items.join(",")
    );
    assert!((1000..1100).contains(&data.len()), "{}", data.len());
    format!(
        r#"{{"sendUserId":"order-service","groupName":"room-42","code":200,"msg":"order","data":{data}}}"#
    )
}

fn bench_push_frame(c: &mut Criterion) {
    let mut ids = MessageIdGen::new(0x1234_5678_9abc_def0, 0);
    let mut group = c.benchmark_group("push_frame");
    for (name, body) in [
        ("string_64B", string_body()),
        ("object_1KiB", object_body()),
    ] {
        let parsed = SendToGroup::decode(body.as_bytes()).expect("valid send_to_group body");
        let message = parsed.message;
        let frame_len = message.frame(ids.next()).len();
        group.throughput(Throughput::Bytes(frame_len as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(&message).frame(black_box(ids.next())));
        });
    }
    group.finish();

    let client_id = "AbCdEfGhIjKlMnOpQrStUv";
    c.bench_function("notice_frame", |b| {
        b.iter(|| {
            notice_frame(
                black_box(ids.next()),
                black_box(true),
                black_box(client_id),
                black_box("user-1001"),
                black_box(r#"{"nick":"Alice"}"#),
            )
        });
    });
}

criterion_group!(benches, bench_push_frame);
criterion_main!(benches);
