//! Encoding and decoding (CRC check + rkyv validation + owned copy) of the
//! frames nodes exchange: a group send carrying a pre-encoded push, and a
//! per-connection delivery; and sealing plus opening one archived frame
//! (AES-256-GCM, in place), what every frame after the handshake pays.
//!
//! Why it matters: every cross-node push costs one encode on the sending
//! core and one decode on the receiving core, whatever the number of
//! recipients; this is the fixed price of crossing a link.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use rkyv::util::AlignedVec;
use shardcast::cluster::frame::{decode_with, encode, encode_body, Frame};
use shardcast::cluster::seal::{Opener, Sealer};
use shardcast::op::{ConnAddr, ConnOp};
use shardcast::ws::Push;

fn frames() -> [(&'static str, Frame); 2] {
    let push = br#"{"messageId":"7fa2b718369c1cad","sendUserId":"alice","code":0,"msg":"","data":{"text":"hello room, this is a typical chat line"}}"#;
    let push = Push::plain(Bytes::from_static(push));
    [
        (
            "group_send",
            Frame::Group {
                req: 41,
                system: "demo".into(),
                group: "live-room-10086".into(),
                frame: push.clone(),
                stream: false,
            },
        ),
        (
            "deliver",
            Frame::Conn {
                req: 42,
                core: 1,
                addr: ConnAddr {
                    slot: 12345,
                    gen: 7,
                },
                system: "demo".into(),
                op: ConnOp::Deliver(push),
            },
        ),
    ]
}

fn bench_link_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("link_frame");
    let mut out = BytesMut::with_capacity(4096);
    let mut scratch = AlignedVec::new();
    for (name, frame) in frames() {
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&frame), &mut out).expect("encodes");
            })
        });
        let mut wire = BytesMut::new();
        encode(&frame, &mut wire).expect("encodes");
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode_with(black_box(&wire), &mut scratch).expect("valid"))
        });
        let mut body = AlignedVec::new();
        encode_body(&frame, &mut body).expect("encodes");
        let (mut sealer, mut opener) = (Sealer::new(&[3; 32]), Opener::new(&[3; 32]));
        group.bench_function(format!("seal_open/{name}"), |b| {
            b.iter(|| {
                out.clear();
                sealer.seal(black_box(&body), &mut out).expect("seals");
                opener.open(&mut out).expect("opens").expect("complete").1
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_link_frame);
criterion_main!(benches);
