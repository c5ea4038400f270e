//! The inter-node frame decoder: the one surface a peer (or anything that
//! reaches the cluster port) can feed arbitrary bytes into. Decodes every
//! frame in the input; each frame that decodes must re-encode to bytes that
//! decode to the same frame, and `consumed` must stay within the input.
//!
//! A random mutation of a frame nearly always breaks its CRC, and then the
//! decoder stops before rkyv's validation is reached. So the first input
//! byte chooses: even, the rest is a frame *body*, given a correct length
//! and CRC header before decoding (this exercises validation); odd, the rest
//! is a raw byte stream as a peer would send it (this exercises framing).
//! The committed seeds come in both forms (`cargo test --lib
//! write_link_frame_fuzz_seeds -- --ignored` writes them).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rkyv::util::AlignedVec;
use shardcast::cluster::frame::{decode_with, encode, wrap_body};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = match mode % 2 {
        0 => wrap_body(rest),
        _ => rest.to_vec(),
    };
    let mut scratch = AlignedVec::new();
    let mut offset = 0;
    while let Ok(Some((frame, consumed))) = decode_with(&input[offset..], &mut scratch) {
        assert!(consumed > 0 && offset + consumed <= input.len());
        let mut out = BytesMut::new();
        encode(&frame, &mut out).expect("a decoded frame re-encodes");
        let (again, n) = decode_with(&out, &mut scratch)
            .expect("a re-encoded frame decodes")
            .expect("a re-encoded frame is complete");
        assert_eq!(n, out.len());
        assert_eq!(again, frame);
        offset += consumed;
    }
});
