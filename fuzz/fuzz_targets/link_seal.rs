//! Sealed link frames (src/cluster/seal.rs): after the handshake, every
//! byte a peer or a relay on the path sends goes through `Opener::open`
//! first. The input is a key (32 bytes), a frame counter (8 bytes, LE) and a
//! mode byte, then the rest:
//! - mode even: the rest is a byte stream opened frame by frame with that
//!   key and counter, as the link's reader does. It must never panic, never
//!   claim more bytes than it has, and an opened body goes on to the frame
//!   decoder (which must not panic either). Random bytes essentially never
//!   carry a valid tag, so this exercises the length and tag handling.
//! - mode odd: the rest is a body sealed at that counter; it must open to
//!   the same bytes at the same counter, and not at the next one, nor with a
//!   byte of the sealed frame flipped.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rkyv::util::AlignedVec;
use shardcast::cluster::frame::decode_body;
use shardcast::cluster::seal::{Opener, SealError, Sealer, HEADER_LEN, TAG_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((key, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((counter, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let counter = u64::from_le_bytes(*counter);
    let Some((&mode, rest)) = rest.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let mut buf = rest.to_vec();
        let mut opener = Opener::at(key, counter);
        let mut scratch = AlignedVec::new();
        let mut pos = 0;
        while let Ok(Some((body, used))) = opener.open(&mut buf[pos..]) {
            assert!(used >= HEADER_LEN + TAG_LEN && pos + used <= rest.len());
            let _ = decode_body(body, &mut scratch);
            pos += used;
        }
        return;
    }
    let mut out = BytesMut::new();
    match Sealer::at(key, counter).seal(rest, &mut out) {
        Ok(n) => assert_eq!(n, out.len()),
        Err(SealError::Exhausted) if counter == u64::MAX => return,
        Err(e) => panic!("sealing {} bytes: {e}", rest.len()),
    }
    let mut wire = out.to_vec();
    let (body, used) = Opener::at(key, counter)
        .open(&mut wire)
        .expect("a sealed frame opens")
        .expect("a sealed frame is complete");
    assert_eq!(body, rest);
    assert_eq!(used, out.len());
    let mut wire = out.to_vec();
    assert!(
        !matches!(Opener::at(key, counter.wrapping_add(1)).open(&mut wire), Ok(Some(_))),
        "opened at the next counter"
    );
    let mut wire = out.to_vec();
    let at = usize::from(rest.first().copied().unwrap_or(0)) % wire.len();
    wire[at] ^= 0x01;
    assert!(
        !matches!(Opener::at(key, counter).open(&mut wire), Ok(Some(_))),
        "opened with byte {at} flipped"
    );
});
