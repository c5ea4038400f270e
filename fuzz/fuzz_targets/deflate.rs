//! permessage-deflate's two readers of client input (docs/api.md §10), chosen by
//! the first byte:
//!
//! - even: the rest is a `Sec-WebSocket-Extensions` value (lossy UTF-8). An
//!   agreement has a window of 9–15, and its answer, read as an offer, agrees to
//!   the same (the server never answers what it would not accept itself).
//! - odd: the rest is a client's byte stream on a connection with deflate, read
//!   with `ws.max_client_message` taken from the second byte and cut at a point
//!   taken from the third. It must never panic, every inflated message stays within
//!   the limit, and the pieces handed on do not depend on where the stream was cut
//!   (a read boundary changes nothing).

#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use shardcast::ws::deflate::{negotiate, offer, Inbound, InboundError, Piece};

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 0 => offers(rest),
        Some((_, [limit, cut, rest @ ..])) => {
            frames(rest, usize::from(*limit) * 64, usize::from(*cut))
        }
        _ => {}
    }
});

fn offers(data: &[u8]) {
    let header = String::from_utf8_lossy(data);
    if let Some(agreed) = negotiate(&header) {
        assert!((9..=15).contains(&agreed.deflate.window_bits()));
        assert_eq!(negotiate(&agreed.answer()), Some(agreed), "{header:?}");
    }
    let _ = offer::for_request(true, Some(&header), Some(&header));
}

/// What a feed handed on: the stream for tungstenite, as one run of bytes per
/// inflated message or plain stretch; or the error it ended with.
fn read(parts: &[&[u8]], limit: usize) -> (Vec<u8>, Vec<usize>, Option<InboundError>) {
    let mut inbound = Inbound::default();
    let (mut stream, mut messages) = (Vec::new(), Vec::new());
    for part in parts {
        let fed = inbound.feed(part, limit, &mut |piece| {
            if let Piece::Inflated { inflated, .. } = piece {
                assert!(inflated <= limit, "{inflated} > {limit}");
                messages.push(inflated);
            }
            stream.extend_from_slice(piece.bytes());
            ControlFlow::Continue(())
        });
        if let Err(e) = fed {
            return (stream, messages, Some(e));
        }
    }
    (stream, messages, None)
}

fn frames(data: &[u8], limit: usize, cut: usize) {
    let whole = read(&[data], limit);
    let at = cut.min(data.len());
    let (a, b) = data.split_at(at);
    assert_eq!(read(&[a, b], limit), whole, "cut at {at}");
}
