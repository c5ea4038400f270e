//! What the node sends compressed: one message deflated into one frame
//! (RFC 7692 §7.2.1), with no context taken over from an earlier message,
//! by the core's compressor.
//!
//! No context takeover is what makes compress-once possible: a frame
//! deflated from a fresh state is readable by every client, whatever it
//! received before, so the same bytes can go to every recipient (and be
//! kept for replay). The price is ratio on small messages — a push under a
//! few hundred bytes barely shrinks without the previous messages as a
//! dictionary — hence `ws.compression_min_size`, and None for a message
//! that does not shrink: it then goes plain, which every client reads too.
//!
//! One compressor per core and window size (9–15 bits, made on first use:
//! nearly always only 15, the window of every browser), reset before each
//! message: a compressor's state is a few hundred KiB, so one per call
//! would cost an allocation and page faults per message, and one per
//! connection would cost that per connection (docs/api.md §10). Cores are
//! threads, so "per core" is a thread-local.
//!
//! Level: [`LEVEL`] (its doc has the measurements behind it).

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

use super::TAIL;
use crate::json::Part;
use crate::ws::frame::{self, RSV1};

/// The zlib-rs compression level: 2 (`cargo bench --bench deflate` measures
/// levels 1, 2, 4 and 6 on push frames' JSON; README, "criterion", has the
/// figures). Why 2:
/// - Level 1 is zlib-ng's "quick" strategy (fixed Huffman codes): about half
///   the time, but it gives away a quarter to a third of the saving, and
///   bytes are paid on every recipient's wire while the time is paid once
///   per push.
/// - Above level 2 the time is the same for small messages (the floor is
///   the reset of the hash table), but for messages of several KiB it grows
///   faster than the saving, which depends on the data. It is spent on the
///   core serving the API call, which runs it to completion (no preemption
///   in monoio), and for `send_to_client` it is spent per delivery.
pub const LEVEL: u32 = 2;

/// Smallest and largest window a compressor is made for.
const MIN_WINDOW: u8 = 9;
const MAX_WINDOW: u8 = 15;
const WINDOWS: usize = (MAX_WINDOW - MIN_WINDOW + 1) as usize;

/// A core's output buffer larger than this is given back after use (a
/// 16 MiB echo should not stay in every core).
const SCRATCH_KEEP: usize = 256 * 1024;

/// The compressors of one core, by window size, and their output buffer.
#[derive(Default)]
struct Compressors {
    by_window: [Option<Compress>; WINDOWS],
    /// Initialised bytes the compressor writes into (its length is the
    /// room, never shrunk but by `SCRATCH_KEEP`).
    scratch: Vec<u8>,
}

thread_local! {
    static COMPRESSORS: RefCell<Compressors> = RefCell::default();
}

/// The text frame of `payload` compressed: RSV1 set, the sync-flush tail
/// `00 00 ff ff` removed (RFC 7692 §7.2.1), no context takeover, a window
/// of at most `window_bits` (9–15; what the connection agreed to). None
/// when `payload` is shorter than `min_size` or does not shrink: send the
/// plain frame.
pub fn compressed_text(payload: &[u8], min_size: usize, window_bits: u8) -> Option<Bytes> {
    compressed_frame(frame::OP_TEXT, payload, min_size, window_bits)
}

/// [`compressed_text`] for a message of any data `opcode` (text or binary).
pub fn compressed_frame(
    opcode: u8,
    payload: &[u8],
    min_size: usize,
    window_bits: u8,
) -> Option<Bytes> {
    if payload.len() < min_size {
        return None;
    }
    COMPRESSORS.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        let frame = c
            .deflate(payload, window_bits)
            .map(|compressed| frame::server_frame(RSV1 | opcode, Part::Raw(compressed)));
        c.release_scratch();
        frame
    })
}

impl Compressors {
    /// `payload` deflated with the tail removed, if it shrank.
    fn deflate(&mut self, payload: &[u8], window_bits: u8) -> Option<&[u8]> {
        let bits = window_bits.clamp(MIN_WINDOW, MAX_WINDOW);
        let z = self.by_window[usize::from(bits - MIN_WINDOW)].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(LEVEL), false, bits)
        });
        z.reset();
        // Room for exactly what shrinks: compressed + tail < payload + tail.
        // Output that fills it did not shrink (or has more to come).
        let room = payload.len() + TAIL.len();
        if self.scratch.len() < room {
            self.scratch.resize(room, 0);
        }
        let out = &mut self.scratch[..room];
        let done = z.compress(payload, out, FlushCompress::Sync).is_ok();
        let (read, wrote) = (z.total_in() as usize, z.total_out() as usize);
        let compressed = out.get(..wrote)?.strip_suffix(&TAIL)?;
        (done && read == payload.len() && wrote < room).then_some(compressed)
    }

    fn release_scratch(&mut self) {
        if self.scratch.len() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::deflate::inflate::inflate;

    /// The payload of a server frame, and its first byte.
    fn split(frame: &[u8]) -> (u8, &[u8]) {
        let head = frame::parse_head(frame).expect("a whole header");
        (frame[0], &frame[head.header_len..])
    }

    /// `n` bytes of xorshift noise: nothing for deflate to find.
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn json(n: usize) -> Vec<u8> {
        let item = r#"{"sku":"SKU-00042","name":"Widget","qty":3,"price":19.99},"#;
        let mut s =
            br#"{"messageId":"0123456789abcdef","sendUserId":"svc","code":0,"msg":"m","data":["#
                .to_vec();
        while s.len() < n {
            s.extend_from_slice(item.as_bytes());
        }
        s.extend_from_slice(b"{}]}");
        s
    }

    #[test]
    fn a_compressed_frame_inflates_back_to_its_payload_at_every_window() {
        for bits in 9..=15 {
            for n in [300, 4096, 70_000] {
                let payload = json(n);
                let f = compressed_text(&payload, 256, bits).expect("JSON shrinks");
                let (first, body) = split(&f);
                assert_eq!(first, 0x80 | RSV1 | frame::OP_TEXT, "FIN, RSV1, text");
                assert!(body.len() < payload.len() / 2, "{} of {}", body.len(), n);
                assert!(!body.ends_with(&TAIL), "the tail is removed");
                let mut out = Vec::new();
                inflate(body, payload.len(), &mut out).expect("inflates");
                assert_eq!(out, payload, "window {bits}, {n} bytes");
            }
        }
    }

    #[test]
    fn a_window_of_9_bits_reaches_no_further_back_than_512_bytes() {
        // A 1000-byte block repeated: window 15 finds the repeat, 9 cannot.
        let block = noise(1000);
        let payload = [block.clone(), block].concat();
        let wide = compressed_frame(frame::OP_BINARY, &payload, 0, 15).expect("repeat found");
        assert!(wide.len() < 1200, "{}", wide.len());
        assert!(compressed_frame(frame::OP_BINARY, &payload, 0, 9).is_none_or(|f| f.len() > 1500));
    }

    #[test]
    fn small_or_incompressible_payloads_are_left_plain() {
        let payload = json(1000);
        assert!(compressed_text(&payload, payload.len() + 1, 15).is_none());
        assert!(compressed_text(&payload, payload.len(), 15).is_some());
        assert!(compressed_text(b"", 0, 15).is_none());
        assert!(compressed_frame(frame::OP_BINARY, &noise(4096), 0, 15).is_none());
    }

    #[test]
    fn the_compressor_is_reset_between_messages() {
        let a = json(2000);
        let first = compressed_text(&a, 0, 15).expect("shrinks");
        let _ = compressed_text(&json(5000), 0, 15);
        assert_eq!(
            compressed_text(&a, 0, 15),
            Some(first),
            "same bytes, same frame"
        );
    }
}
