//! `parse_request` on hostile bytes, whole and split across two reads.
//!
//! The connection loop calls `parse_request` after every read and drains
//! `consumed` bytes per complete request, so the parser must give the same
//! answers however TCP segments the stream. For each input, under the
//! default limits and under small ones (so the 413/431 paths are reached):
//!
//! * the whole input is parsed as one read buffer, draining pipelined
//!   requests in a loop;
//! * the same bytes are fed as a growing buffer, first a prefix ending at an
//!   input-derived point, then the rest, draining after each read as the
//!   connection loop does;
//! * both must yield the same requests (same `consumed`, same content) and
//!   end the same way (incomplete, or the same error);
//! * every `Complete` has `0 < consumed <= len` and a body within the limit,
//!   and a `Complete` on the prefix is `Complete` with the same `consumed` on
//!   the full buffer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::http::{parse_request, HttpError, Limits, Parsed};

const SMALL: Limits = Limits {
    max_head: 256,
    max_body: 64,
};

/// How a connection's stream ended up: the requests, then how it stopped.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// `consumed` and the request's Debug text, per complete request.
    requests: Vec<(usize, String)>,
    /// `None`: waiting for more bytes; `Some(err)`: the connection is closed.
    error: Option<HttpError>,
}

/// One `parse_request` call with the invariants every answer must meet.
fn parse_checked(buf: &[u8], limits: &Limits) -> Result<Option<(usize, String)>, HttpError> {
    match parse_request(buf, limits)? {
        Parsed::Incomplete => Ok(None),
        Parsed::Complete { request, consumed } => {
            assert!(consumed > 0, "a complete request consumed nothing");
            assert!(consumed <= buf.len(), "consumed {consumed} > {}", buf.len());
            assert!(request.body.len() <= limits.max_body);
            assert!(request.body.len() <= consumed);
            Ok(Some((consumed, format!("{request:?}"))))
        }
    }
}

/// Drains complete requests from the front of `buf`; stops at Incomplete or
/// at an error (after which the connection would be closed).
fn drain(buf: &mut Vec<u8>, limits: &Limits, out: &mut Outcome) {
    while out.error.is_none() {
        match parse_checked(buf, limits) {
            Ok(Some((consumed, request))) => {
                buf.drain(..consumed);
                out.requests.push((consumed, request));
            }
            Ok(None) => break,
            Err(err) => out.error = Some(err),
        }
    }
}

/// The stream delivered in `chunks`, each appended to the read buffer.
fn feed(chunks: &[&[u8]], limits: &Limits) -> Outcome {
    let mut out = Outcome {
        requests: Vec::new(),
        error: None,
    };
    let mut buf = Vec::new();
    for chunk in chunks {
        if out.error.is_some() {
            break;
        }
        buf.extend_from_slice(chunk);
        drain(&mut buf, limits, &mut out);
    }
    out
}

/// FNV-1a: an input-derived split point the fuzzer can steer by mutation
/// without the input losing its shape as an HTTP stream.
fn split_point(data: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % (data.len() as u64 + 1)) as usize
}

fuzz_target!(|data: &[u8]| {
    let split = split_point(data);
    let (prefix, _) = data.split_at(split);
    for limits in [Limits::default(), SMALL] {
        // A single parse: a Complete on the prefix is a Complete with the
        // same `consumed` (and request) on the full buffer.
        let on_prefix = parse_checked(prefix, &limits);
        let on_full = parse_checked(data, &limits);
        if let Ok(Some(first)) = &on_prefix {
            assert_eq!(on_full.as_ref().ok(), Some(&Some(first.clone())));
        }

        // The whole stream: one read, or two reads split at `split`.
        let whole = feed(&[data], &limits);
        let two_reads = feed(&[prefix, &data[split..]], &limits);
        assert_eq!(whole, two_reads, "split at {split} changed the outcome");
        // The requests and the unconsumed tail account for the stream.
        let consumed: usize = whole.requests.iter().map(|(n, _)| n).sum();
        assert!(consumed <= data.len());
    }
});
