//! The inter-node frame decoder: the one surface a peer (or anything that
//! reaches the cluster port) can feed arbitrary bytes into. Decodes every
//! frame in the input; each frame that decodes must re-encode to bytes that
//! decode to the same frame, and `consumed` must stay within the input.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rkyv::util::AlignedVec;
use shardcast::cluster::frame::{decode_with, encode};

fuzz_target!(|data: &[u8]| {
    let mut scratch = AlignedVec::new();
    let mut offset = 0;
    while let Ok(Some((frame, consumed))) = decode_with(&data[offset..], &mut scratch) {
        assert!(consumed > 0 && offset + consumed <= data.len());
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
