//! clientId encode and decode (one AES block + base64url), with AES-128 and
//! AES-256 keys.
//!
//! Why it matters: every new WebSocket encodes one id, and every API call
//! that names a client (`send_to_client`, `send_to_clients` with up to
//! `max_batch` ids, bind/unbind/is_online/…) decodes one per id before it
//! can route anything. A batch send of 1000 ids pays this 1000 times on the
//! API core, so it must stay far below the cost of the send itself.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shardcast::client_id::{ClientId, ClientIdCodec};

const SYSTEM: &str = "demo-system";

fn sample_id() -> ClientId {
    ClientId {
        node: 3,
        core: 1,
        slot: 123_456,
        generation: 42,
        epoch: 1_790_000_000,
    }
}

fn bench_client_id(c: &mut Criterion) {
    let keys: [(&str, &[u8]); 2] = [("aes128", &[0x5a; 16]), ("aes256", &[0xa5; 32])];
    let id = sample_id();
    let mut group = c.benchmark_group("client_id");
    for (name, key) in keys {
        let codec = ClientIdCodec::new(key).expect("16- or 32-byte key");
        let text = codec.encode(&id, SYSTEM);
        assert_eq!(codec.decode(&text, SYSTEM), Ok(id));

        group.bench_with_input(BenchmarkId::new("encode", name), &id, |b, id| {
            b.iter(|| codec.encode(black_box(id), black_box(SYSTEM)));
        });
        group.bench_with_input(BenchmarkId::new("decode", name), &text, |b, text| {
            b.iter(|| codec.decode(black_box(text), black_box(SYSTEM)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_client_id);
criterion_main!(benches);
