use super::*;
use crate::ws::deflate::TAIL;
use crate::ws::frame::{client_fragment, FIN, OP_PING};
use flate2::{Compress, Compression, FlushCompress};

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// `data` deflated as a client does (sync flush, tail removed).
fn deflated(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    out.truncate(out.len() - TAIL.len());
    out
}

fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    client_fragment(&mut f, first, payload, MASK);
    f
}

/// What tungstenite would read, as (plain bytes, inflated messages) after
/// feeding `parts` in turn; or the error.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// Everything handed on, in order, as one stream.
    stream: Vec<u8>,
    /// The payloads of the inflated messages, with their opcode.
    inflated: Vec<(u8, Vec<u8>)>,
}

fn feed(inbound: &mut Inbound, parts: &[&[u8]], limit: usize) -> Result<Seen, InboundError> {
    let mut seen = Seen::default();
    for part in parts {
        let _ = inbound.feed(part, limit, &mut |piece| {
            match piece {
                Piece::Plain(b) => seen.stream.extend_from_slice(b),
                Piece::Inflated {
                    frame,
                    compressed,
                    inflated,
                } => {
                    assert!(compressed > 0 || frame.len() <= 6);
                    assert!(frame.len() - inflated <= MAX_CLIENT_HEADER);
                    let head = frame::parse_head(frame).expect("a whole header");
                    assert!(head.fin && head.masked && head.rsv == 0);
                    assert_eq!(&frame[head.header_len - 4..head.header_len], [0; 4]);
                    assert_eq!(head.frame_len(), frame.len() as u64);
                    let payload = frame[head.header_len..].to_vec();
                    seen.inflated.push((head.opcode, payload));
                    seen.stream.extend_from_slice(frame);
                }
            }
            ControlFlow::Continue(())
        })?;
    }
    Ok(seen)
}

fn text(s: &str) -> Vec<u8> {
    frame(FIN | RSV1 | OP_TEXT, &deflated(s.as_bytes()))
}

#[test]
fn a_compressed_message_comes_out_inflated_and_plain_frames_as_they_came() {
    let mut input = frame(FIN | OP_TEXT, b"plain");
    input.extend(text("compressed, compressed, compressed"));
    input.extend(frame(FIN | OP_PING, b"p"));
    let mut i = Inbound::default();
    let seen = feed(&mut i, &[&input], 1000).unwrap();
    let inflated = vec![(OP_TEXT, b"compressed, compressed, compressed".to_vec())];
    assert_eq!(seen.inflated, inflated);
    assert!(seen.stream.starts_with(&frame(FIN | OP_TEXT, b"plain")));
    assert!(seen.stream.ends_with(&frame(FIN | OP_PING, b"p")));
    assert!(i.at_rest());
}

#[test]
fn every_cut_of_the_input_gives_the_same_stream() {
    let data = "a fragmented message with a ping inside it ".repeat(20);
    let c = deflated(data.as_bytes());
    let (a, rest) = c.split_at(c.len() / 3);
    let (b, d) = rest.split_at(rest.len() / 2);
    let mut input = frame(RSV1 | OP_BINARY, a);
    input.extend(frame(OP_CONT, b));
    input.extend(frame(FIN | OP_PING, b"mid"));
    input.extend(frame(FIN | OP_CONT, d));
    input.extend(frame(OP_TEXT, b"plain "));
    input.extend(frame(FIN | OP_CONT, b"fragments"));
    let whole = feed(&mut Inbound::default(), &[&input], 10_000).unwrap();
    assert_eq!(whole.inflated, vec![(OP_BINARY, data.into_bytes())]);
    for cut in 0..=input.len() {
        let mut i = Inbound::default();
        let (x, y) = input.split_at(cut);
        let seen = feed(&mut i, &[x, y], 10_000).unwrap();
        assert_eq!(seen, whole, "cut at {cut}");
        assert!(i.at_rest());
    }
}

#[test]
fn only_a_complete_message_is_at_rest() {
    let input = text("hello hello hello");
    for cut in 1..input.len() {
        let mut i = Inbound::default();
        feed(&mut i, &[&input[..cut]], 100).unwrap();
        assert!(!i.at_rest(), "cut at {cut}");
    }
    let mut i = Inbound::default();
    feed(&mut i, &[&frame(RSV1 | OP_TEXT, &[])], 100).unwrap();
    assert!(!i.at_rest(), "a first fragment");
    let mut i = Inbound::default();
    feed(&mut i, &[&frame(OP_TEXT, b"x")], 100).unwrap();
    assert!(!i.at_rest(), "a plain first fragment");
}

#[test]
fn rfc_7692_violations_are_protocol_errors() {
    let proto = |parts: &[&[u8]]| match feed(&mut Inbound::default(), parts, 1000) {
        Err(InboundError::Protocol(_)) => {}
        other => panic!("{other:?}"),
    };
    let first = frame(RSV1 | OP_TEXT, &deflated(b"abc"));
    // RSV1 (or any RSV bit) on a continuation of a compressed message.
    proto(&[&first, &frame(FIN | RSV1 | OP_CONT, b"")]);
    proto(&[&first, &frame(FIN | 0x20 | OP_CONT, b"")]);
    // A new message inside a compressed one, plain or compressed.
    proto(&[&first, &frame(FIN | OP_TEXT, b"x")]);
    proto(&[&first, &text("x")]);
    // A compressed message inside a plain fragmented one.
    proto(&[&frame(OP_TEXT, b"x"), &text("y")]);
    // An unmasked compressed frame.
    let mut unmasked = frame(FIN | RSV1 | OP_TEXT, &[]);
    unmasked[1] &= 0x7f;
    unmasked.truncate(2);
    proto(&[&unmasked]);
}

#[test]
fn frames_tungstenite_judges_go_through_untouched() {
    // RSV1 on control frames and on plain continuations, RSV2/RSV3, a
    // continuation with no message: tungstenite fails them as it would
    // without deflate.
    for input in [
        frame(FIN | RSV1 | OP_PING, b""),
        frame(FIN | 0x20 | OP_TEXT, b"x"),
        frame(FIN | RSV1 | 0x10 | OP_TEXT, b"x"),
        [frame(OP_TEXT, b"x"), frame(FIN | RSV1 | OP_CONT, b"y")].concat(),
        frame(FIN | OP_CONT, b"z"),
        frame(FIN | 0x3, b"reserved opcode"),
    ] {
        let seen = feed(&mut Inbound::default(), &[&input], 1000).unwrap();
        assert_eq!(seen.stream, input);
        assert!(seen.inflated.is_empty());
    }
}

#[test]
fn the_limit_applies_to_the_inflated_size() {
    let data = vec![b'z'; 5000];
    let input = frame(FIN | RSV1 | OP_TEXT, &deflated(&data));
    assert!(input.len() < 100, "5000 equal bytes deflate small");
    let seen = feed(&mut Inbound::default(), &[&input], 5000).unwrap();
    assert_eq!(seen.inflated, vec![(OP_TEXT, data)]);
    let err = feed(&mut Inbound::default(), &[&input], 4999);
    assert_eq!(err, Err(InboundError::TooLarge));
}

#[test]
fn compressed_bytes_past_their_bound_are_refused_before_they_are_kept() {
    let limit = 1000;
    let bound = compressed_limit(limit);
    // One frame declaring more than the bound: refused at its header.
    let mut head = Vec::new();
    client_fragment(&mut head, FIN | RSV1 | OP_TEXT, &vec![0; bound + 1], MASK);
    head.truncate(8);
    let mut i = Inbound::default();
    assert_eq!(feed(&mut i, &[&head], limit), Err(InboundError::TooLarge));
    assert!(i.bytes.capacity() == 0);
    // Many small frames: refused at the frame that passes it.
    let mut i = Inbound::default();
    feed(&mut i, &[&frame(RSV1 | OP_TEXT, &[0; 100])], limit).unwrap();
    let mut err = Ok(Seen::default());
    for _ in 0..bound / 100 + 1 {
        err = feed(&mut i, &[&frame(OP_CONT, &[0; 100])], limit);
        if err.is_err() {
            break;
        }
    }
    assert_eq!(err, Err(InboundError::TooLarge));
    assert!(i.bytes.len() <= bound);
}

#[test]
fn corrupt_data_and_an_empty_message() {
    let bad = frame(FIN | RSV1 | OP_TEXT, &[0xff, 0xff, 0xff]);
    assert_eq!(
        feed(&mut Inbound::default(), &[&bad], 100),
        Err(InboundError::Corrupt)
    );
    let empty = frame(FIN | RSV1 | OP_TEXT, &[0x00]);
    let seen = feed(&mut Inbound::default(), &[&empty], 100).unwrap();
    assert_eq!(seen.inflated, vec![(OP_TEXT, Vec::new())]);
}

#[test]
fn a_break_stops_the_feed() {
    let input = [text("one"), text("two")].concat();
    let mut n = 0;
    let flow = Inbound::default()
        .feed(&input, 100, &mut |_| {
            n += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!((flow, n), (ControlFlow::Break(()), 1));
}
