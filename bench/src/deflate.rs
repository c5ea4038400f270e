//! permessage-deflate (RFC 7692) on the subscribers' side (`--deflate`): the offer in the
//! upgrade request, the server's answer read from its 101, and the inflating of the
//! messages it sends compressed (RSV1).
//!
//! How a connection inflates depends on the answer:
//! - **`server_no_context_takeover` agreed**: every message is a deflate stream of its
//!   own, so the thread's one inflater, reset per message, reads the messages of all
//!   its connections (shardcast always agrees to it; nchan agrees when it is offered).
//! - **not agreed**: the server may compress a message with the ones before it as its
//!   dictionary, so the connection keeps an inflater of its own (made at its first
//!   compressed message, a 32 KiB window and zlib-rs' state: ~40 KiB) that goes on
//!   from message to message, as a browser's does. nchan 1.3.6 answers a browser's
//!   offer with plain `permessage-deflate` (no flag) although it deflates every message
//!   once, from a reset stream, for all its subscribers (src/util/nchan_util.c,
//!   `nchan_common_deflate`): its frames read either way.
//!
//! A push reaches every subscriber as the same bytes, and inflating it costs the
//! generator ~4 µs (zlib-rs, 500 B → 1 KB), about what a plain delivery costs it in all:
//! inflated for each of 10,000 connections, it would make the generator, not the
//! server, set the latency it measures. So the thread keeps the messages it inflated
//! per message ([`Recent`]) by their compressed bytes: the same bytes from a fresh
//! stream inflate to the same message. A connection with context takeover always
//! inflates its own.
//!
//! A message that inflates past its limit, or is not valid deflate data, ends the
//! connection with the reason ([`InflateError`]); so does an answer that breaks
//! RFC 7692 §7.1 ([`AnswerError`]).

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};

/// What Chrome and Firefox offer (and `--deflate` without a value).
pub const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The extension's registered name.
const NAME: &str = "permessage-deflate";

/// What a sync flush ends with: removed by the sender (§7.2.1), put back before
/// inflating (§7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output room added at a time while inflating.
const STEP: usize = 16 * 1024;
/// Places for the messages a thread keeps inflated ([`Recent`]): a message goes to
/// the place its CRC-32 names and replaces the one there. Many more than the messages
/// in flight at once (a connection behind by a few hundred still finds its messages).
const RECENT: usize = 4096;
/// Larger compressed messages are not kept.
const RECENT_MAX: usize = 64 * 1024;

/// Why a server's `Sec-WebSocket-Extensions` answer fails the connection (RFC 6455
/// §9.1, RFC 7692 §7.1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the server answered extension {0:?}, which was not offered")]
    NotOffered(String),
    #[error("the server answered permessage-deflate twice")]
    Twice,
    #[error("permessage-deflate answer: unknown parameter {0:?}")]
    UnknownParam(String),
    #[error("permessage-deflate answer: parameter {0:?} given twice")]
    DuplicateParam(String),
    #[error("permessage-deflate answer: parameter {name:?} with bad value {value:?}")]
    BadValue { name: String, value: Option<String> },
    #[error("permessage-deflate answer: client_max_window_bits, which the offer did not name")]
    ClientWindowNotOffered,
    #[error("malformed Sec-WebSocket-Extensions answer {0:?}")]
    Malformed(String),
}

/// Why a compressed message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("a compressed message inflates past {0} bytes")]
    TooLarge(usize),
    #[error("a compressed message is not valid deflate data")]
    Corrupt,
}

/// What the server agreed to (its answer's parameters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Agreed {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
}

/// One element of an extension header: its name and its parameters (values unquoted).
#[derive(Debug, PartialEq, Eq)]
struct Element<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<&'a str>)>,
}

/// The elements of an extension header (`,`-separated; none holds a quoted comma in
/// permessage-deflate's grammar).
fn elements(header: &str) -> Result<Vec<Element<'_>>, AnswerError> {
    let malformed = || AnswerError::Malformed(header.to_string());
    let mut out = Vec::new();
    for element in header.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = element.split(';').map(str::trim);
        let name = parts.next().filter(|n| is_token(n)).ok_or_else(malformed)?;
        let mut params = Vec::new();
        for param in parts {
            let (key, value) = match param.split_once('=') {
                Some((k, v)) => {
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v);
                    (k.trim(), Some(v))
                }
                None => (param, None),
            };
            if !is_token(key) {
                return Err(malformed());
            }
            params.push((key, value));
        }
        out.push(Element { name, params });
    }
    Ok(out)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A window size parameter's value: 8–15, digits only.
fn window_bits(name: &str, value: Option<&str>) -> Result<u8, AnswerError> {
    value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v.len() <= 2)
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|b| (8..=15).contains(b))
        .ok_or_else(|| AnswerError::BadValue {
            name: name.to_string(),
            value: value.map(str::to_string),
        })
}

/// Reads the server's answer (its `Sec-WebSocket-Extensions` lines joined with `,`; None
/// when it sent none) to `offer` (None: nothing offered). Ok(None): no extension in
/// use, plain frames only.
pub fn read_answer(
    answer: Option<&str>,
    offer: Option<&str>,
) -> Result<Option<Agreed>, AnswerError> {
    let answered = match answer {
        Some(a) => elements(a)?,
        None => return Ok(None),
    };
    let offered_client_window = match offer {
        Some(o) => elements(o)?
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(NAME))
            .any(|e| {
                e.params
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("client_max_window_bits"))
            }),
        None => false,
    };
    let mut agreed = None;
    for e in &answered {
        if offer.is_none() || !e.name.eq_ignore_ascii_case(NAME) {
            return Err(AnswerError::NotOffered(e.name.to_string()));
        }
        if agreed.is_some() {
            return Err(AnswerError::Twice);
        }
        agreed = Some(read_params(&e.params, offered_client_window)?);
    }
    Ok(agreed)
}

/// The parameters of a permessage-deflate answer.
fn read_params(
    params: &[(&str, Option<&str>)],
    offered_client_window: bool,
) -> Result<Agreed, AnswerError> {
    let mut a = Agreed::default();
    let mut seen: Vec<String> = Vec::new();
    for &(name, value) in params {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(AnswerError::DuplicateParam(name.to_string()));
        }
        let flag = |set: &mut bool| match value {
            None => {
                *set = true;
                Ok(())
            }
            Some(v) => Err(AnswerError::BadValue {
                name: name.to_string(),
                value: Some(v.to_string()),
            }),
        };
        match lower.as_str() {
            "server_no_context_takeover" => flag(&mut a.server_no_context_takeover)?,
            "client_no_context_takeover" => flag(&mut a.client_no_context_takeover)?,
            "server_max_window_bits" => a.server_max_window_bits = Some(window_bits(name, value)?),
            "client_max_window_bits" if !offered_client_window => {
                return Err(AnswerError::ClientWindowNotOffered)
            }
            "client_max_window_bits" => a.client_max_window_bits = Some(window_bits(name, value)?),
            _ => return Err(AnswerError::UnknownParam(name.to_string())),
        }
        seen.push(lower);
    }
    Ok(a)
}

thread_local! {
    /// The inflater of this thread's connections without context takeover.
    static SHARED: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// How one connection's compressed messages are inflated.
pub enum Inflate {
    /// `server_no_context_takeover`: by the thread's inflater, reset per message.
    PerMessage,
    /// The server may take its context over: by this connection's own inflater (made at
    /// its first compressed message), which goes on from message to message.
    Takeover(Option<Box<Decompress>>),
}

impl Inflate {
    /// The inflating `agreed` calls for.
    pub fn for_agreement(agreed: &Agreed) -> Inflate {
        if agreed.server_no_context_takeover {
            Inflate::PerMessage
        } else {
            Inflate::Takeover(None)
        }
    }

    /// Inflates one message's payload as sent (raw deflate, the sync-flush tail
    /// removed), appending it to `out`; at most `limit` bytes may come out.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        match self {
            Inflate::PerMessage => SHARED.with(|cell| {
                let mut cell = cell.try_borrow_mut().map_err(|_| InflateError::Corrupt)?;
                let z = cell.get_or_insert_with(|| Decompress::new(false));
                z.reset(false);
                message(z, compressed, limit, out)
            }),
            Inflate::Takeover(own) => {
                let z = own.get_or_insert_with(|| Box::new(Decompress::new(false)));
                let r = message(z, compressed, limit, out);
                if r.is_err() {
                    // Whatever follows cannot be read either; start afresh.
                    z.reset(false);
                }
                r
            }
        }
    }
}

/// The messages a thread inflated from a fresh stream (no context takeover), by their
/// compressed bytes: each is inflated once, however many connections of the thread
/// receive it (direct-mapped by CRC-32; a hit compares the bytes).
#[derive(Default)]
pub struct Recent {
    /// [`RECENT`] places, made at the first message.
    places: Vec<Option<Entry>>,
    /// Where a message too large to keep is inflated.
    large: Vec<u8>,
}

struct Entry {
    compressed: Vec<u8>,
    inflated: Vec<u8>,
}

impl Recent {
    /// The message whose payload as sent (no context takeover) is `compressed`,
    /// inflated: kept from an earlier connection, or inflated now (at most `limit`
    /// bytes).
    pub fn inflate(&mut self, compressed: &[u8], limit: usize) -> Result<&[u8], InflateError> {
        if compressed.len() > RECENT_MAX {
            self.large = Vec::new();
            Inflate::PerMessage.inflate(compressed, limit, &mut self.large)?;
            return Ok(&self.large);
        }
        if self.places.is_empty() {
            self.places.resize_with(RECENT, || None);
        }
        let k = crc32fast::hash(compressed) as usize % RECENT;
        let hit = self.places[k]
            .as_ref()
            .is_some_and(|e| e.compressed == compressed);
        if !hit {
            // Taken out while inflating: a message that fails leaves no entry behind.
            let mut e = self.places[k].take().unwrap_or(Entry {
                compressed: Vec::new(),
                inflated: Vec::new(),
            });
            e.compressed.clear();
            e.inflated.clear();
            Inflate::PerMessage.inflate(compressed, limit, &mut e.inflated)?;
            e.compressed.extend_from_slice(compressed);
            self.places[k] = Some(e);
        }
        match &self.places[k] {
            Some(e) if e.inflated.len() <= limit => Ok(&e.inflated),
            Some(_) => Err(InflateError::TooLarge(limit)),
            None => Err(InflateError::Corrupt),
        }
    }

    /// Messages kept.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.places.iter().flatten().count()
    }
}

/// One message through `z`: its bytes, then the tail unless the stream ended (a final
/// block: the next message starts a new stream, RFC 7692 §7.2.3.3).
fn message(
    z: &mut Decompress,
    compressed: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    let end = out.len().saturating_add(limit);
    let ended = feed(z, compressed, out, end, limit)? || feed(z, &TAIL, out, end, limit)?;
    if ended {
        z.reset(false);
    }
    Ok(())
}

/// Feeds `input` to `z`, appending what comes out to `out` (never more than up to
/// `end`); whether the stream ended.
fn feed(
    z: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    end: usize,
    limit: usize,
) -> Result<bool, InflateError> {
    loop {
        if out.len() == out.capacity() {
            if out.len() > end {
                return Err(InflateError::TooLarge(limit));
            }
            // Room up to one byte past the limit: output that fills it is too large.
            let room = (end + 1 - out.len()).min(STEP.max(out.capacity() - out.len()));
            out.reserve_exact(room.max(1));
        }
        let (in0, out0) = (z.total_in(), z.total_out());
        let status = z
            .decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        let read = (z.total_in() - in0) as usize;
        let wrote = (z.total_out() - out0) as usize;
        input = input.get(read..).unwrap_or_default();
        if out.len() > end {
            return Err(InflateError::TooLarge(limit));
        }
        if status == Status::StreamEnd {
            return Ok(true);
        }
        let full = out.len() == out.capacity();
        if !full && input.is_empty() {
            return Ok(false);
        }
        if !full && read == 0 && wrote == 0 {
            return Err(InflateError::Corrupt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// `msg` deflated as a server sends it: sync flush, tail removed; `z` reset first
    /// when `fresh` (no context takeover), else continuing its stream.
    fn server_deflate(z: &mut Compress, msg: &[u8], fresh: bool) -> Vec<u8> {
        if fresh {
            z.reset();
        }
        let mut out = Vec::with_capacity(msg.len() + 64);
        z.compress_vec(msg, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        out
    }

    fn json(n: usize, seed: u64) -> Vec<u8> {
        crate::json_body::JsonBody::new(n, seed)
            .unwrap()
            .text(7)
            .into_bytes()
    }

    #[test]
    fn reads_the_answers_of_shardcast_and_nchan() {
        let shardcast =
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        let a = read_answer(Some(shardcast), Some(BROWSER_OFFER))
            .unwrap()
            .unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        assert!(matches!(Inflate::for_agreement(&a), Inflate::PerMessage));
        // nchan 1.3.6 to a browser's offer: the bare name.
        let a = read_answer(Some("permessage-deflate"), Some(BROWSER_OFFER))
            .unwrap()
            .unwrap();
        assert_eq!(a, Agreed::default());
        assert!(matches!(
            Inflate::for_agreement(&a),
            Inflate::Takeover(None)
        ));
        // nchan to an offer naming server_no_context_takeover echoes it.
        let a = read_answer(
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=15"),
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits"),
        )
        .unwrap()
        .unwrap();
        assert!(a.server_no_context_takeover);
        assert_eq!(a.client_max_window_bits, Some(15));
        let a = read_answer(
            Some("Permessage-Deflate; server_max_window_bits=\"10\""),
            Some(BROWSER_OFFER),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.server_max_window_bits, Some(10));
        assert_eq!(read_answer(None, Some(BROWSER_OFFER)), Ok(None));
        assert_eq!(read_answer(None, None), Ok(None));
    }

    #[test]
    fn answers_that_break_rfc_7692_fail() {
        let offer = Some("permessage-deflate");
        for (answer, why) in [
            ("permessage-deflate", "nothing offered"),
            ("x-webkit-deflate-frame", "another extension"),
        ] {
            assert!(
                matches!(
                    read_answer(Some(answer), None),
                    Err(AnswerError::NotOffered(_))
                ),
                "{why}"
            );
        }
        assert!(matches!(
            read_answer(Some("deflate-frame"), offer),
            Err(AnswerError::NotOffered(_))
        ));
        assert_eq!(
            read_answer(Some("permessage-deflate, permessage-deflate"), offer),
            Err(AnswerError::Twice)
        );
        assert!(matches!(
            read_answer(Some("permessage-deflate; foo"), offer),
            Err(AnswerError::UnknownParam(_))
        ));
        assert!(matches!(
            read_answer(
                Some("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
                offer
            ),
            Err(AnswerError::DuplicateParam(_))
        ));
        for bad in ["=16", "=7", "=012", "", "=x", "=\"\""] {
            let answer = format!("permessage-deflate; server_max_window_bits{bad}");
            assert!(
                matches!(
                    read_answer(Some(&answer), offer),
                    Err(AnswerError::BadValue { .. })
                ),
                "{answer}"
            );
        }
        assert!(matches!(
            read_answer(
                Some("permessage-deflate; server_no_context_takeover=1"),
                offer
            ),
            Err(AnswerError::BadValue { .. })
        ));
        assert_eq!(
            read_answer(Some("permessage-deflate; client_max_window_bits=15"), offer),
            Err(AnswerError::ClientWindowNotOffered)
        );
        assert!(matches!(
            read_answer(Some("permessage-deflate; a b"), offer),
            Err(AnswerError::Malformed(_))
        ));
    }

    #[test]
    fn messages_deflated_from_a_fresh_stream_inflate_per_message() {
        // As shardcast and nchan send them: one compressor, reset per message (level 2,
        // window 15 like shardcast; level 6, window 10 like nchan).
        for (level, bits) in [(2, 15), (6, 10)] {
            let mut z = Compress::new_with_window_bits(Compression::new(level), false, bits);
            let mut inf = Inflate::PerMessage;
            let mut own = Inflate::Takeover(None);
            for seed in 0..5 {
                let msg = json(1000, seed);
                let c = server_deflate(&mut z, &msg, true);
                assert!(c.len() < msg.len() * 2 / 3, "{} of {}", c.len(), msg.len());
                for inf in [&mut inf, &mut own] {
                    let mut out = b"kept".to_vec();
                    inf.inflate(&c, 2000, &mut out).unwrap();
                    assert_eq!(&out[..4], b"kept");
                    assert_eq!(&out[4..], &msg[..], "level {level} window {bits}");
                }
            }
        }
    }

    #[test]
    fn a_connection_with_context_takeover_keeps_its_window() {
        let mut z = Compress::new(Compression::new(6), false);
        let msgs: Vec<Vec<u8>> = (0..4).map(|s| json(600, s % 2)).collect();
        let wire: Vec<Vec<u8>> = msgs
            .iter()
            .map(|m| server_deflate(&mut z, m, false))
            .collect();
        // The repeats refer to the messages before them: far fewer bytes.
        assert!(
            wire[2].len() * 4 < wire[0].len(),
            "{} vs {}",
            wire[2].len(),
            wire[0].len()
        );
        let mut own = Inflate::Takeover(None);
        for (m, w) in msgs.iter().zip(&wire) {
            let mut out = Vec::new();
            own.inflate(w, 1000, &mut out).unwrap();
            assert_eq!(&out, m);
        }
        // Read without the earlier messages, the third one refers to what was never seen.
        let mut out = Vec::new();
        assert_eq!(
            Inflate::PerMessage.inflate(&wire[2], 1000, &mut out),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn a_final_block_ends_the_stream_and_the_next_message_starts_afresh() {
        // RFC 7692 §7.2.3.1's "Hello" as one final block (no tail follows it).
        let hello = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut own = Inflate::Takeover(None);
        for _ in 0..2 {
            let mut out = Vec::new();
            own.inflate(&hello, 100, &mut out).unwrap();
            assert_eq!(out, b"Hello");
        }
        // §7.2.3.1's compressed "Hello" with the tail removed.
        let mut out = Vec::new();
        Inflate::PerMessage
            .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn recent_messages_are_inflated_once_and_stay_right() {
        let mut z = Compress::new(Compression::new(2), false);
        let msgs: Vec<Vec<u8>> = (0..300).map(|s| json(700, s)).collect();
        let wire: Vec<Vec<u8>> = msgs
            .iter()
            .map(|m| server_deflate(&mut z, m, true))
            .collect();
        let mut recent = Recent::default();
        // Each message to three connections, interleaved as coalesced writes come.
        for (k, w) in wire.iter().enumerate() {
            for _ in 0..3 {
                assert_eq!(recent.inflate(w, 1000).unwrap(), &msgs[k][..]);
            }
            if k >= 2 {
                assert_eq!(
                    recent.inflate(&wire[k - 2], 1000).unwrap(),
                    &msgs[k - 2][..]
                );
            }
        }
        assert!(recent.kept() > 250, "{}", recent.kept());
        // Two messages for one place: each replaces the other, each reads right.
        let (a, b) = (0..wire.len())
            .flat_map(|a| (a + 1..wire.len()).map(move |b| (a, b)))
            .find(|&(a, b)| {
                crc32fast::hash(&wire[a]) as usize % RECENT
                    == crc32fast::hash(&wire[b]) as usize % RECENT
            })
            .expect("300 messages in 4096 places: a shared place (p > 99 %)");
        for k in [a, b, a, b] {
            assert_eq!(recent.inflate(&wire[k], 1000).unwrap(), &msgs[k][..]);
        }
        // A corrupt message leaves nothing behind, an empty one inflates to nothing.
        let kept = recent.kept();
        assert_eq!(recent.inflate(&[0xff; 4], 1000), Err(InflateError::Corrupt));
        assert!(recent.kept() <= kept);
        assert_eq!(recent.inflate(&[0xff; 4], 1000), Err(InflateError::Corrupt));
        assert_eq!(recent.inflate(&[0x00], 1000).unwrap(), b"");
        assert_eq!(recent.inflate(&wire[1], 1000).unwrap(), &msgs[1][..]);
        // Past the limit is past the limit, kept or not.
        assert_eq!(
            recent.inflate(&wire[1], 699),
            Err(InflateError::TooLarge(699))
        );
    }

    #[test]
    fn past_the_limit_or_corrupt_is_an_error() {
        let mut z = Compress::new(Compression::new(6), false);
        let zeros = server_deflate(&mut z, &vec![0u8; 100_000], true);
        let mut out = Vec::new();
        assert_eq!(
            Inflate::PerMessage.inflate(&zeros, 99_999, &mut out),
            Err(InflateError::TooLarge(99_999))
        );
        assert!(out.len() <= 100_000, "{}", out.len());
        out.clear();
        Inflate::PerMessage
            .inflate(&zeros, 100_000, &mut out)
            .unwrap();
        assert_eq!(out.len(), 100_000);
        assert_eq!(
            Inflate::PerMessage.inflate(&[0xff; 16], 1000, &mut Vec::new()),
            Err(InflateError::Corrupt)
        );
        // A connection's own inflater starts afresh after an error.
        let mut own = Inflate::Takeover(None);
        assert!(own.inflate(&[0xff; 16], 1000, &mut Vec::new()).is_err());
        let mut out = Vec::new();
        own.inflate(&server_deflate(&mut z, b"after", true), 100, &mut out)
            .unwrap();
        assert_eq!(out, b"after");
    }
}
